"""How long ``orchestrate --help`` and ``orchestrate validate`` take, against what they would
cost if they imported torch and mlflow as the commands that train do; and what importing one
module of each concept package loads (a package's face imports its modules on first use only).

    python benchmarks/bench_cli_startup.py --rounds 7 [--before 2971b96]

Each command runs as a user runs it (a fresh process), interleaved with the reference imports
in the same rounds so that load on a shared host hits them alike; the medians and the median of
the within-round ratios are printed. ``--before REV`` adds ``--help`` and ``validate`` of that
commit (a git worktree put first on PYTHONPATH), in the same rounds. The last lines say which
heavy libraries a plain import of a module of each package loads.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from orchestrator.testing.cli import commit_tree

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).with_name("orchestrate")
QUICKSTART = str(ROOT / "sweeps" / "quickstart.yaml")
REFERENCE = "import torch, mlflow"

COMMANDS = {
    "python (bare)": [sys.executable, "-c", "pass"],
    "orchestrate --help": [str(SCRIPT), "--help"],
    "orchestrate validate": [str(SCRIPT), "validate", QUICKSTART],
    REFERENCE: [sys.executable, "-c", REFERENCE],
}
# A light module of each package: importing it runs the package's face first.
PACKAGE_MODULES = (
    "orchestrator.trial.identity",
    "orchestrator.trial.spec",
    "orchestrator.study.growth",
    "orchestrator.tracking.runs_view",
    "orchestrator.execution.exit_codes",
)
HEAVY = ("torch", "optuna", "mlflow")


def seconds(command: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=ROOT, env=env)
    return time.perf_counter() - start


def loaded(module: str) -> list[str]:
    """The heavy libraries a fresh ``import module`` loads."""
    probe = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    found = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, cwd=ROOT
    )
    return found.stdout.split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--before", help="a commit whose --help and validate run beside")
    args = parser.parse_args()
    commands = {name: (command, None) for name, command in COMMANDS.items()}
    with contextlib.ExitStack() as stack:
        if args.before:
            tree = stack.enter_context(commit_tree(args.before))
            # The same console script: it imports the commit's orchestrator first.
            env = {**os.environ, "PYTHONPATH": str(tree)}
            commands[f"--help ({args.before})"] = (COMMANDS["orchestrate --help"], env)
            commands[f"validate ({args.before})"] = (COMMANDS["orchestrate validate"], env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, (command, env) in commands.items():
                times[name].append(seconds(command, env))
    reference = times[REFERENCE]
    for name, measured in times.items():
        ratio = statistics.median(t / r for t, r in zip(measured, reference, strict=True))
        median = statistics.median(measured)
        print(f"{name:24s} median {median:6.3f} s   / {REFERENCE} {ratio:5.2f}")
    for module in PACKAGE_MODULES:
        heavy = ", ".join(loaded(module)) or "none of " + "/".join(HEAVY)
        print(f"import {module:36s} loads: {heavy}")


if __name__ == "__main__":
    main()
