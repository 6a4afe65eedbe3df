"""How long Ctrl-C takes to stop a sweep: seconds from the first SIGINT to the exit of
``orchestrate sweep``, whose two local workers are one in the middle of a long dense training
step and one waiting on that training's lock (the two trials of seed 0 share it).

    python benchmarks/bench_stop.py --before d109b18 --cap 120

Each line reads ``<label>: exit X s after SIGINT (code C)``. ``--before REV`` runs the same
sweep first with the orchestrator of that commit (a git worktree put first on PYTHONPATH),
side by side on this machine; a sweep still running ``--cap`` seconds after the signal gets a
second SIGINT and reads ``not gone after CAP s``.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from orchestrator import workspace
from orchestrator.sweep_file import parse_config
from orchestrator.testing.cli import commit_tree, finish, orchestrate
from orchestrator.testing.results import study_storage, wait_for
from orchestrator.testing.sweeps import slow_sweep, write_sweep

ROOT = Path(__file__).resolve().parent.parent


def measure(folder: Path, label: str, cap: float, env: dict[str, str]) -> str:
    document = slow_sweep(
        folder,
        "stop",
        search={"sampler": "grid", "space": {"alds.rate": {"choices": [0.0, 0.3]}}},
        train={"epochs": 500},  # far longer than the cap: the step never ends by itself
        execution={"workers_per_device": 2},
    )
    storage = study_storage(document)
    cache = workspace.cache_folder(parse_config(document))
    sweep = orchestrate(
        "sweep", str(write_sweep(folder, document)), cwd=folder, env=env, background=True
    )

    def both_running() -> bool:
        study = optuna.load_study(study_name="stop", storage=storage)
        return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))) == 2

    wait_for(lambda: list(cache.glob("dense-*.flock")), what="the dense lock", process=sweep)
    wait_for(both_running, what="both trials running", process=sweep)
    time.sleep(3.0)
    signalled = time.monotonic()
    sweep.send_signal(signal.SIGINT)
    try:
        code, _, _ = finish(sweep, timeout=cap)
        return f"{label}: exit {time.monotonic() - signalled:.1f} s after SIGINT (code {code})"
    except subprocess.TimeoutExpired:
        sweep.send_signal(signal.SIGINT)
        finish(sweep, timeout=120)
        return f"{label}: not gone after {cap:.0f} s (the step runs to its end)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="a commit to measure first, side by side")
    parser.add_argument("--cap", type=float, default=120.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        lines = []
        if args.before:
            with commit_tree(args.before) as tree:
                folder = Path(scratch) / "run-before"
                folder.mkdir()
                env = {"PYTHONPATH": str(tree)}
                lines.append(measure(folder, f"before ({args.before})", args.cap, env))
        folder = Path(scratch) / "run-now"
        folder.mkdir()
        lines.append(measure(folder, "now", args.cap, {}))
    print("\n".join(lines))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
