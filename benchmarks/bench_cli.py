"""What each command costs as a user runs it, against the floors: ``python -c pass`` and
``python -c "import torch"``; and what importing one module of each concept package loads.

    python benchmarks/bench_cli.py --rounds 3 [--before REV]

Commands on the finished quickstart (its workspace ``.orchestrate/quickstart``; run first,
untimed, when its study is not finished): ``--help``, ``validate``, ``status``, ``sweep`` with
nothing to run (a no-op) and ``report`` with nothing new. Each runs in a fresh process,
interleaved with the floors in the same rounds, so load on a shared host hits them alike; the
medians and the median of the within-round ratios to ``import torch`` are printed.
``--before REV`` runs the same commands of that commit (a git worktree first on PYTHONPATH)
in the same rounds, on the same study.

Then a grown sweep: a copy of the quickstart at one seed (in a folder of its own, untimed),
grown to two; its fixed cost is the grown start's wall clock less the new trials' durations
(one worker runs them one after another), and each new trial's overhead is its duration less
the seconds its compression and training took (the ``run_seconds`` it records). With
``--before`` the same for that commit (its fixed cost only: it records no run seconds). The
last lines say which heavy libraries a plain import of a module of each package loads.
docs/benchmarks.md records the goals and the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from orchestrator import stored_names
from orchestrator.results import open_study
from orchestrator.testing.cli import commit_tree

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).with_name("orchestrate")
QUICKSTART = str(ROOT / "sweeps" / "quickstart.yaml")
FLOOR = "import torch"

FLOORS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    FLOOR: [sys.executable, "-c", FLOOR],
}
COMMANDS = {
    "--help": [str(SCRIPT), "--help"],
    "validate": [str(SCRIPT), "validate", QUICKSTART],
    "status": [str(SCRIPT), "status", QUICKSTART],
    "sweep, nothing to run": [str(SCRIPT), "sweep", QUICKSTART],
    "report, nothing new": [str(SCRIPT), "report", QUICKSTART],
}
# A light module of each package: importing it runs the package's face first.
PACKAGE_MODULES = (
    "orchestrator.trial.identity",
    "orchestrator.trial.spec",
    "orchestrator.trial.network",
    "orchestrator.data.digests",
    "orchestrator.study.growth",
    "orchestrator.tracking.runs_view",
    "orchestrator.execution.exit_codes",
)
HEAVY = ("torch", "optuna", "mlflow")


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without the settings that would point a command elsewhere."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ORCHESTRATE_") and k != "MLFLOW_TRACKING_URI"
    }
    return {**env, **(extra or {})}


def seconds(command: list[str], env: dict[str, str], cwd: Path = ROOT) -> float:
    start = time.perf_counter()
    subprocess.run(
        command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd, env=env
    )
    return time.perf_counter() - start


def loaded(module: str) -> list[str]:
    """The heavy libraries a fresh ``import module`` loads."""
    probe = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    found = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, cwd=ROOT
    )
    return found.stdout.split()


def finish_quickstart(env: dict[str, str]) -> None:
    """Run the quickstart twice, untimed: the first run trains what its study lacks (nothing,
    when it has finished), the second finds the report logged from every trial, as the timed
    no-op will."""
    for _ in range(2):
        subprocess.run(
            [str(SCRIPT), "sweep", QUICKSTART],
            check=True,
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
        )


@dataclass
class Grown:
    """A grown start: its fixed cost (wall clock less the new trials' durations), the mean
    overhead of a new trial (None where trials record no run seconds), how many trials were
    new, and where the fixed cost lies: before the first new trial started, after the last
    one ended."""

    fixed: float
    overhead: float | None
    trials: int
    before_first: float
    after_last: float


def grown(env: dict[str, str]) -> Grown:
    """A copy of the quickstart grown from one seed to two, measured (:class:`Grown`)."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        document = yaml.safe_load(Path(QUICKSTART).read_text())
        document["name"], document["seeds"] = "bench_cli_grow", [0]
        document.setdefault("execution", {}).update(
            workspace=str(folder / "ws"), cache_dir=str(folder / "checkpoints")
        )
        path = folder / "grow.yaml"
        command = [str(SCRIPT), "sweep", str(path)]
        path.write_text(yaml.safe_dump(document))
        subprocess.run(command, check=True, cwd=folder, env=env, stdout=subprocess.DEVNULL)
        document["seeds"] = [0, 1]
        path.write_text(yaml.safe_dump(document))
        started = dt.datetime.now()  # Optuna's trial times are local and naive, as this
        wall = seconds(command, env, cwd=folder)
        ended = started + dt.timedelta(seconds=wall)
        study, _, _ = open_study(path, None, None)
        new = [t for t in study.get_trials() if t.user_attrs.get(stored_names.TRIAL_SEED) == 1]
        durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in new]
        ran = [t.user_attrs.get(stored_names.TRIAL_RUN_SECONDS) for t in new]
        overhead = (
            None
            if None in ran
            else statistics.mean(d - r for d, r in zip(durations, ran, strict=True))
        )
        first = min(t.datetime_start for t in new)
        last = max(t.datetime_complete for t in new)
        return Grown(
            wall - sum(durations),
            overhead,
            len(new),
            (first - started).total_seconds(),
            (ended - last).total_seconds(),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", help="a commit whose commands run beside, on the same study")
    args = parser.parse_args()
    env = clean_env()
    finish_quickstart(env)
    commands = {name: (command, env) for name, command in {**FLOORS, **COMMANDS}.items()}
    with contextlib.ExitStack() as stack:
        if args.before:
            tree = stack.enter_context(commit_tree(args.before))
            # The same console script: it imports the commit's orchestrator first.
            before = clean_env({"PYTHONPATH": str(tree)})
            # Its report goes to a folder of its own: two versions of the report's code stamp
            # the same folder differently, and each would find the other's report stale.
            own_report = ["--output", str(stack.enter_context(tempfile.TemporaryDirectory()))]
            for name, command in COMMANDS.items():
                mine = command + own_report if name == "report, nothing new" else command
                if mine is not command:  # written once, untimed: then there is nothing new
                    subprocess.run(mine, check=True, cwd=ROOT, env=before, capture_output=True)
                commands[f"{name} ({args.before})"] = (mine, before)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, (command, command_env) in commands.items():
                times[name].append(seconds(command, command_env))
        floor = times[FLOOR]
        for name, measured in times.items():
            ratio = statistics.median(t / f for t, f in zip(measured, floor, strict=True))
            median = statistics.median(measured)
            print(f"{name:34s} median {median:6.2f} s   / {FLOOR} {ratio:5.2f}")
        now = grown(env)
        each = "" if now.overhead is None else f"; overhead per trial {now.overhead:.2f} s"
        print(f"grown by a seed ({now.trials} new trials): fixed cost {now.fixed:.2f} s{each}")
        print(
            f"  of which before the first new trial {now.before_first:.2f} s, after the last "
            f"{now.after_last:.2f} s"
        )
        if args.before:
            then = grown(before)
            print(
                f"grown by a seed ({args.before}, {then.trials} new trials): fixed cost "
                f"{then.fixed:.2f} s"
            )
    for module in PACKAGE_MODULES:
        heavy = ", ".join(loaded(module)) or "none of " + "/".join(HEAVY)
        print(f"import {module:36s} loads: {heavy}")


if __name__ == "__main__":
    main()
