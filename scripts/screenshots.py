"""Take screenshots of the MLflow UI for a sweep, for the docs.

Usage::

    .venv/bin/python scripts/screenshots.py \\
        --store sqlite:////path/to/.orchestrate/quickstart/mlflow.db \\
        --experiment quickstart --out docs/img

It writes three PNGs (1600x1000) into ``--out``:

``runs_table.png``
    The experiment's runs table, filtered to the sweep's trials, sorted by ``alds.rate``, with
    the ``alds.rate`` parameter and the headline metrics as columns: the sweep's question
    ("which ALDS rate keeps the most accuracy?") read off one table.
``trial_run.png``
    One ALDS trial's run page (Overview tab): its final metrics, tags (``config``, ``arm``) and
    parent run; the parameter table starts below the metrics, so the ``alds.rate`` row itself
    is below the fold -- the run name and the ``config`` tag carry the rate.
``chart_view.png``
    The runs page in chart mode: ``alds.rate`` against final accuracy, then accuracy and the
    effective parameter count against the weights remaining, one line per trial.

Why the script does what it does (MLflow 3.17's UI, read from its bundled JavaScript):

* The runs page keeps its *search facets* in the URL query (``searchFilter``, ``orderByKey``,
  ``orderByAsc``, ``startTime``, ``lifecycleFilter``, ``modelVersionFilter``,
  ``datasetsFilter``) plus ``compareRunsMode`` (``TABLE``/``CHART``/...) and ``workflowType``
  (``machine_learning`` shows the "Model training" side bar instead of the GenAI one). The
  *UI state* -- ``selectedColumns``, ``columnWidths``, ``compareRunCharts``, ``runsExpanded``
  -- is not in the URL: it lives in the browser's localStorage, so a fresh headless browser
  sees the default table (Source/Models/Dataset columns, parent runs collapsed).
* The one way a URL carries UI state is a *shared view*: ``?viewStateShareKey=KEY`` loads
  the JSON in the experiment tag ``mlflow.sharedViewState.KEY`` (what the UI's "Share" does).
  It carries the facets and the UI state except ``runsExpanded``, ``runsPinned``,
  ``runsHidden``, ``runsVisibilityMap`` and ``autoRefreshEnabled``. So parent runs cannot be
  shown expanded without a click; instead the view filters on ``orchestrate.role = 'trial'``,
  which (like any search filter or sort other than by date) lists the trials flat, by name.
  A sweep writes that view (``orchestrator/tracking/runs_view.py``) when it creates its experiment;
  for a store made before that, the script writes it into a *copy* of a SQLite store, so the
  store given is never changed, and into other stores in place (as "Share" would).
* On that copy it also sets each trial's ``mlflow.runColor`` tag (the UI's run colour) from a
  palette by ALDS rate: the default colours, hashed from run ids, are often near-equal
  shades of one hue and the chart lines cannot be told apart.
* The page is opened as ``http://mlflow.localhost:PORT`` (Chromium resolves ``*.localhost`` to
  the loopback itself), not ``127.0.0.1``: on a localhost/127.0.0.1 page MLflow 3.17 opens
  its Assistant side panel on first load, which covers a quarter of the page. The server is
  told to accept that Host header and Origin.
* The server is started with ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`` (no huey job
  runner processes: nothing here needs them) in its own process group, which is stopped as a
  whole at the end.
* Chromium is told it has a mouse (``--blink-settings`` hover/pointer types): headless, it
  reports none, and Plotly then pins its tool bar over every chart.
* Each screenshot is taken together with a dump of the rendered DOM; if the texts that show
  the page has rendered are missing (slow machine), the shot is retaken with twice the
  virtual time budget, up to two retakes; then the script fails rather than keep a blank or
  half-loaded picture.

Exit codes: 0 done; 2 a problem to fix (no chromium, no store, no such experiment or no
trials, server or browser failure, a page that never rendered), with a message on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from orchestrator import stored_names
from orchestrator.plan import ALDS_RATE
from orchestrator.tracking import runs_view

TAG_ROLE = stored_names.TAG_ROLE
RATE_PARAM = ALDS_RATE
VIEW_TAG = stored_names.TAG_SHARED_VIEW_PREFIX + runs_view.VIEW_KEY
PLOTLY_MARKER = 'class="main-svg"'  # Plotly's chart <svg>, present once a chart is drawn
UI_HOST = "mlflow.localhost"
# Colour per ALDS rate, lowest first (matplotlib's tab10: the IMP-only baseline is blue).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
WINDOW = (1600, 1000)
MIN_PNG_BYTES = 20_000  # a blank or spinner-only page compresses to well under this


class ScreenshotError(RuntimeError):
    """A problem the user can fix (missing browser, store, experiment): printed, exit 2."""


@dataclass(frozen=True)
class Shot:
    """One screenshot: the file it goes to, the URL, and texts the rendered DOM must hold."""

    filename: str
    url: str
    expect: tuple[str, ...]


@dataclass(frozen=True)
class Target:
    """What to shoot: the sweep's experiment and the trial whose run page is shown."""

    experiment_id: str
    run_id: str
    run_name: str


def find_chromium() -> str:
    """Path of the Chromium binary (Debian package ``chromium``), or ScreenshotError."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    raise ScreenshotError(
        "chromium not found on PATH (looked for 'chromium' and 'chromium-browser'); "
        "install it, e.g. `apt-get install chromium`"
    )


def sqlite_path(store: str) -> Path | None:
    """The database file of a ``sqlite:///`` store URI, None for any other kind of store."""
    prefix = "sqlite:///"
    if not store.startswith(prefix):
        return None
    return Path(store[len(prefix) :])


def copy_sqlite(src: Path, dst: Path) -> None:
    """Copy a SQLite database consistently (backup API), even while a sweep writes to it."""
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    try:
        target = sqlite3.connect(dst)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Stop the process group led by ``proc``: SIGTERM, then SIGKILL after ``timeout``.

    The group is the one ``start_new_session=True`` made for ``proc``, so only processes this
    script started are signalled; children that outlive the leader are waited for as well.
    """
    pgid = proc.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.poll()
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@contextlib.contextmanager
def mlflow_server(store: str, workdir: Path, start_timeout: float) -> Iterator[int]:
    """Run ``mlflow server`` on a free 127.0.0.1 port for the ``with`` block; yield the port.

    Its log and its (unused) artifact folder go in ``workdir``, so nothing lands in the
    current directory."""
    port = free_port()
    log_path = workdir / "server.log"
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        store,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--artifacts-destination",
        str(workdir / "artifacts"),
        "--allowed-hosts",
        f"{UI_HOST}:{port},127.0.0.1:{port},localhost:{port}",
        "--cors-allowed-origins",
        f"http://{UI_HOST}:{port}",
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        wait_healthy(proc, port, start_timeout, log_path)
        yield port
    finally:
        stop_group(proc)


def wait_healthy(proc: subprocess.Popen[bytes], port: int, timeout: float, log: Path) -> None:
    """Block until the server's ``/health`` answers OK; fail early if the server exits."""
    url = f"http://127.0.0.1:{port}/health"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ScreenshotError(
                f"mlflow server exited with code {proc.returncode}; its log:\n{tail(log)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise ScreenshotError(f"mlflow server did not answer {url} in {timeout:.0f}s:\n{tail(log)}")


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def prepare_store(store: str, experiment: str, private: bool) -> Target:
    """Find the experiment and the trial to show, and write the shared view into the store;
    on a private copy also colour the trials (see ``trial_colors``). One client for all: each
    new client on a SQLite store costs seconds of schema checks."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = ", ".join(sorted(e.name for e in client.search_experiments()))
        raise ScreenshotError(f"no experiment named {experiment!r} in the store (has: {names})")
    trials = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.`{TAG_ROLE}` = 'trial'", max_results=1000
    )
    if not trials:
        raise ScreenshotError(f"experiment {experiment!r} has no run tagged {TAG_ROLE}=trial")
    if VIEW_TAG not in exp.tags:  # a store written before sweeps wrote their view
        view = json.dumps(runs_view.view_state([RATE_PARAM]))
        client.set_experiment_tag(exp.experiment_id, VIEW_TAG, view)
    if private:
        rates = {r.info.run_id: r.data.params.get(RATE_PARAM) for r in trials}
        for run_id, color in trial_colors(rates).items():
            client.set_tag(run_id, "mlflow.runColor", color)
    names = {r.info.run_id: r.info.run_name or r.info.run_id for r in trials}
    run_id = min(names, key=lambda rid: (not names[rid].startswith("ALDS"), names[rid]))
    return Target(exp.experiment_id, run_id, names[run_id])


def trial_colors(rates: dict[str, str | None]) -> dict[str, str]:
    """A colour per trial (run id -> ``#rrggbb``) by its ALDS rate, lowest rate first.

    MLflow colours runs by a hash of the run id, which often gives near-equal shades, so the
    lines of a chart cannot be told apart; the UI takes a run's colour from its
    ``mlflow.runColor`` tag instead when there is one. Trials without a numeric rate are grey.
    """

    def number(value: str | None) -> float | None:
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None

    numbers = {run_id: number(value) for run_id, value in rates.items()}
    order = sorted({n for n in numbers.values() if n is not None})
    return {
        run_id: "#7f7f7f" if n is None else PALETTE[order.index(n) % len(PALETTE)]
        for run_id, n in numbers.items()
    }


def build_shots(port: int, target: Target) -> list[Shot]:
    """The three pages to shoot, with the texts each shows once it has rendered."""
    base = f"http://{UI_HOST}:{port}/#/experiments/{target.experiment_id}"
    run_name = target.run_name

    def query(**params: str) -> str:
        return urllib.parse.urlencode({"workflowType": "machine_learning", **params})

    runs = query(viewStateShareKey=runs_view.VIEW_KEY)
    charts = query(viewStateShareKey=runs_view.VIEW_KEY, compareRunsMode="CHART")
    return [
        Shot(
            "runs_table.png", f"{base}/runs?{runs}", (run_name, f'col-id="params.`{RATE_PARAM}`"')
        ),
        Shot("trial_run.png", f"{base}/runs/{target.run_id}?{query()}", (run_name, RATE_PARAM)),
        # Charts show a spinner until Plotly has drawn them: wait for Plotly's <svg>.
        Shot("chart_view.png", f"{base}/runs?{charts}", (runs_view.CHART_SECTION, PLOTLY_MARKER)),
    ]


def chromium_env() -> dict[str, str]:
    """The environment for Chromium, with a short TMPDIR: it puts a Unix socket there, and
    under a long TMPDIR (pytest's, say) the path passes the 107-byte limit and it aborts."""
    env = dict(os.environ)
    if len(tempfile.gettempdir()) > 40 and os.path.isdir("/tmp"):
        env["TMPDIR"] = "/tmp"
    return env


def screenshot(chromium: str, shot: Shot, out: Path, budget_ms: int, profile: Path) -> bool:
    """Shoot one page into ``out``; True when the rendered DOM holds all of ``shot.expect``."""
    width, height = WINDOW
    cmd = [
        chromium,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-extensions",
        # Report a mouse (hover-capable, fine pointer) as a desktop browser would: without one,
        # Plotly pins its tool bar over every chart, hiding points at the top of the plot.
        "--blink-settings=primaryHoverType=2,availableHoverTypes=2,"
        "primaryPointerType=4,availablePointerTypes=4",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        f"--virtual-time-budget={budget_ms}",
        "--dump-dom",
        f"--screenshot={out}",
        shot.url,
    ]
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=chromium_env(),
        start_new_session=True,
    )
    try:
        dom, err = proc.communicate(timeout=budget_ms / 1000 + 90)
    except subprocess.TimeoutExpired:
        stop_group(proc, timeout=5)
        return False
    finally:
        if proc.poll() is None:
            stop_group(proc, timeout=5)
    if proc.returncode != 0 or not out.is_file():
        msg = err.decode(errors="replace")[-2000:]
        raise ScreenshotError(f"chromium failed on {shot.url} (code {proc.returncode}):\n{msg}")
    text = dom.decode(errors="replace")
    return all(marker in text for marker in shot.expect)


def take_all(chromium: str, shots: list[Shot], out_dir: Path, budget_ms: int, tmp: Path) -> None:
    """Shoot every page; retake with a doubled budget when a page had not rendered yet.

    Virtual time runs ahead of the page when the machine is busy (seen: charts still spinning
    after 30 s of virtual time with a load of 4 on 2 cores, drawn after 60 s), so one fixed
    budget is either flaky or slow; a larger budget costs only a few seconds of real time."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, shot in enumerate(shots):
        path = out_dir / shot.filename
        budget = budget_ms
        for attempt in range(3):
            ok = screenshot(chromium, shot, path, budget, tmp / f"profile-{i}-{attempt}")
            if ok and path.stat().st_size >= MIN_PNG_BYTES:
                break
            budget *= 2
        else:
            raise ScreenshotError(
                f"{shot.url} did not render {shot.expect!r} within {budget // 2} ms of "
                f"virtual time; see {path}"
            )
        retakes = f", {attempt} retake(s)" if attempt else ""
        print(f"wrote {path} ({path.stat().st_size // 1024} KiB{retakes}): {shot.url}")


def run(store: str, experiment: str, out_dir: Path, budget_ms: int, start_timeout: float) -> None:
    """Check the inputs, serve a copy of the store, and take the screenshots."""
    chromium = find_chromium()
    db = sqlite_path(store)
    if db is not None and not db.is_file():
        raise ScreenshotError(f"store not found: {db} (from --store {store})")
    with tempfile.TemporaryDirectory(prefix="mlflow-shots-") as tmp_name:
        tmp = Path(tmp_name)
        serve = store
        private = False
        if db is not None:
            copy = tmp / "mlflow.db"
            copy_sqlite(db, copy)
            serve = f"sqlite:///{copy}"
            private = True
        else:
            print(f"note: writing the shared-view tag {VIEW_TAG} into {store} if it is missing")
        target = prepare_store(serve, experiment, private)
        with mlflow_server(serve, tmp, start_timeout) as port:
            shots = build_shots(port, target)
            take_all(chromium, shots, out_dir, budget_ms, tmp)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit code (2 for a problem the user can fix)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, help="MLflow store URI, e.g. sqlite:///PATH")
    parser.add_argument("--experiment", required=True, help="experiment name (the sweep name)")
    parser.add_argument("--out", type=Path, default=Path("docs/img"), help="output folder")
    parser.add_argument(
        "--budget-ms",
        type=int,
        default=40000,
        help="Chromium virtual time budget per page (doubled on a retake, up to 4x)",
    )
    parser.add_argument(
        "--start-timeout", type=float, default=180.0, help="seconds to wait for the server"
    )
    args = parser.parse_args(argv)
    try:
        run(args.store, args.experiment, args.out, args.budget_ms, args.start_timeout)
    except ScreenshotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
