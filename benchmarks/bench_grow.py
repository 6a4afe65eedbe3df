"""What growing a sweep saves: extending a finished sweep by one seed against running the grown
sweep afresh (``--fresh``, what a changed YAML cost before trials were reused by key).

Both measurements run the real ``orchestrate sweep`` on the same YAML, in one invocation, side
by side: first the sweep at N seeds (not timed), then

  extend   the YAML at N + 1 seeds on that study: only the new seed's trials train (and the
           new seed's dense network);
  resume   the same YAML again, nothing to run: the fixed cost of a start (processes, the
           data read for the trials' keys, the plan);
  fresh    the same YAML with ``--fresh``: every trial trains again (the dense checkpoints
           stay cached, as they would for a user).

    python benchmarks/bench_grow.py [--sweep sweeps/quickstart.yaml] [--seeds 2]
    python benchmarks/bench_grow.py --steps

``--steps`` runs instead the steps of docs/sweep.md's table "What a changed YAML runs" (the
quickstart at one seed, at its three, with a fourth rate, then without reuse) and prints its
rows: the printed plan and the time of each.

The last line reads ``extend by one seed: X s (k trials trained), fresh: Y s (m trials),
fresh/extend R``; the line before it the same without the fixed cost of a start. The quickstart's
trials take seconds, so the start dominates there; on the seed's experiment (hours a trial) the
ratio approaches the ratio of trials.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import yaml

from orchestrator.testing.cli import orchestrate
from orchestrator.testing.sweeps import write_sweep


def timed_sweep(folder: Path, document: dict, *extra: str) -> tuple[float, str]:
    """Seconds of one ``orchestrate sweep`` (as a user runs it) and its plan line."""
    path = write_sweep(folder, document)
    start = time.perf_counter()
    result = orchestrate("sweep", str(path), *extra, cwd=folder, heartbeat=None, timeout=3600)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"orchestrate sweep failed:\n{result.stderr[-3000:]}")
    plan = re.search(r"\d+ trials: [^(]*", " ".join(result.stdout.split()))
    return seconds, plan.group(0).strip() if plan else "?"


STEPS = (
    ("1", "`sweeps/quickstart.yaml` with `seeds: [0]`", {"seeds": [0]}, ()),
    ("2", "`seeds: [0, 1, 2]` (the quickstart as it is)", {"seeds": [0, 1, 2]}, ()),
    ("3", "`alds.rate: {choices: [0.0, 0.3, 0.6, 0.45]}`", {"rates": [0.0, 0.3, 0.6, 0.45]}, ()),
    (
        "without reuse",
        'step 3\'s YAML with `execution.reuse: "off"` and `--fresh`',
        {"reuse": "off"},
        ("--fresh",),
    ),
)


def steps(sweep: Path) -> None:
    """The rows of docs/sweep.md's table of growth steps, each measured here."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        document = yaml.safe_load(sweep.read_text())
        execution = document.setdefault("execution", {})
        execution["workspace"] = str(folder / "ws")
        execution["cache_dir"] = str(folder / "checkpoints")
        for step, change, edit, extra in STEPS:
            if "seeds" in edit:
                document["seeds"] = edit["seeds"]
            if "rates" in edit:
                document["search"]["space"]["alds.rate"]["choices"] = edit["rates"]
            if "reuse" in edit:
                execution["reuse"] = edit["reuse"]
            seconds, plan = timed_sweep(folder, document, *extra)
            print(f"| {step} | {change} | `{plan.rstrip(' ;')}` | {seconds:.1f} s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", type=Path, default=Path("sweeps/quickstart.yaml"))
    parser.add_argument("--seeds", type=int, default=2, help="seeds of the finished sweep")
    parser.add_argument("--steps", action="store_true", help="docs/sweep.md's growth steps")
    args = parser.parse_args()
    if args.steps:
        steps(args.sweep)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        document = yaml.safe_load(args.sweep.read_text())
        document["name"] = "grow"
        document["seeds"] = list(range(args.seeds))
        execution = document.setdefault("execution", {})
        execution["workspace"] = str(folder / "ws")
        execution["cache_dir"] = str(folder / "checkpoints")
        document.setdefault("search", {}).pop("n_trials", None)
        first, plan = timed_sweep(folder, document)
        print(f"{args.seeds} seeds, first run: {first:.1f} s ({plan})")
        document["seeds"] = list(range(args.seeds + 1))
        extend, extend_plan = timed_sweep(folder, document)
        print(f"{args.seeds + 1} seeds, extended: {extend:.1f} s ({extend_plan})")
        resume, resume_plan = timed_sweep(folder, document)
        print(f"{args.seeds + 1} seeds, resumed: {resume:.1f} s ({resume_plan})")
        fresh, fresh_plan = timed_sweep(folder, document, "--fresh")
        print(f"{args.seeds + 1} seeds, --fresh: {fresh:.1f} s ({fresh_plan})")
    trained = re.search(r"(\d+) to train", extend_plan)
    total = re.search(r"(\d+) trials", fresh_plan)
    print(
        f"beyond the {resume:.1f} s of a start: extend {extend - resume:.1f} s, fresh "
        f"{fresh - resume:.1f} s, ratio {(fresh - resume) / max(extend - resume, 1e-9):.2f}"
    )
    print(
        f"extend by one seed: {extend:.1f} s ({trained.group(1) if trained else '?'} trials "
        f"trained), fresh: {fresh:.1f} s ({total.group(1) if total else '?'} trials), "
        f"fresh/extend {fresh / extend:.2f}"
    )


if __name__ == "__main__":
    main()
