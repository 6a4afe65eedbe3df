"""scripts/screenshots.py: the docs' MLflow UI screenshots can be retaken by anyone.

The end-to-end test serves a tiny store made here (no training: runs written with
MlflowClient, tagged as the orchestrator tags them) and checks that the script writes three
real 1600x1000 PNGs and leaves no server process behind. The script itself checks that each
page had rendered (trial names, the alds.rate column, Plotly's charts) before it exits 0.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator import stored_names

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "screenshots.py"
PNGS = ("runs_table.png", "trial_run.png", "chart_view.png")


def run_script(*args: str, env: dict[str, str] | None = None, timeout: float = 30):
    """Run the script as a user would, from the repository root."""
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def make_store(path: Path, experiment: str) -> str:
    """A sweep-shaped store: one parent run and two trials (IMP only, ALDS 0.5)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{path}"
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(experiment)
    parent = client.create_run(
        exp_id, run_name=experiment, tags={stored_names.TAG_ROLE: stored_names.ROLE_SWEEP}
    )
    for rate, name, accuracies in (
        (0.0, "IMP only · prune 0.5 · seed 0", (0.61, 0.66, 0.64)),
        (0.5, "ALDS 0.5 · prune 0.5 · seed 0", (0.61, 0.65, 0.67)),
    ):
        run = client.create_run(
            exp_id,
            run_name=name,
            tags={
                stored_names.TAG_ROLE: stored_names.ROLE_TRIAL,
                stored_names.TAG_PARENT_RUN_ID: parent.info.run_id,
            },
        )
        client.log_param(run.info.run_id, "alds.rate", rate)
        for step, value in enumerate(accuracies):
            client.log_metric(run.info.run_id, "accuracy", value, step=step)
            client.log_metric(run.info.run_id, "remaining", 1 - 0.25 * step, step=step)
            client.log_metric(run.info.run_id, "params_effective", 1000 - 250 * step, step=step)
        client.set_terminated(run.info.run_id)
    client.set_terminated(parent.info.run_id)
    return uri


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (fails on anything that is not a PNG)."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain ``text`` (here: the test's tmp folder)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(cmdline)
    return found


def test_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "mlflow.db"
    result = run_script("--store", f"sqlite:///{missing}", "--experiment", "x", "--out", "o")
    if shutil.which("chromium") is None and shutil.which("chromium-browser") is None:
        assert result.returncode == 2 and "chromium not found" in result.stderr
    else:
        assert result.returncode == 2 and f"store not found: {missing}" in result.stderr
    assert not missing.exists()  # the script must not create an empty store


def test_missing_chromium_is_a_clear_error(tmp_path: Path) -> None:
    result = run_script(
        "--store",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--experiment",
        "x",
        "--out",
        str(tmp_path / "out"),
        env={"PATH": str(tmp_path)},  # nothing to find there
    )
    assert result.returncode == 2
    assert "chromium not found" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.skipif(
    shutil.which("chromium") is None and shutil.which("chromium-browser") is None,
    reason="needs headless Chromium (Debian package chromium)",
)
def test_screenshots_of_a_tiny_store(tmp_path: Path) -> None:
    uri = make_store(tmp_path / "mlflow.db", "tiny")
    out = tmp_path / "img"
    work = tmp_path / "work"
    work.mkdir()
    # TMPDIR puts the script's store copy, server log and browser profiles under tmp_path,
    # so any process left behind would name tmp_path on its command line.
    result = run_script(
        "--store",
        uri,
        "--experiment",
        "tiny",
        "--out",
        str(out),
        env={"TMPDIR": str(work)},
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in PNGS:
        path = out / name
        assert path.is_file(), result.stdout
        assert png_size(path) == (1600, 1000)
        assert path.stat().st_size > 20_000, f"{name} looks blank"
    assert processes_mentioning(str(tmp_path)) == []
    assert list(work.iterdir()) == []  # the temporary folder was removed
