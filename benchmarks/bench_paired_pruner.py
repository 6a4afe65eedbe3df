"""What the paired pruner saves on a sampled sweep, and that it never prunes a twin.

The same sampled sweep runs twice side by side with the real ``orchestrate sweep``: without a
pruner, then with ``search.pruner: paired``. It samples ALDS rates in factorize mode (where a
high rate costs accuracy) on the synthetic task, with every ALDS configuration's IMP-only twin
enqueued, several seeds, and IMP run deep enough for the pruner's three levels.

    python benchmarks/bench_paired_pruner.py [--trials 12] [--seeds 2]

Each line reads ``<pruner>: X s, T trials (P pruned, of them W twins), S steps trained``; the
last ``paired/none: time R, steps Q``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from optuna.trial import TrialState

from orchestrator import curve, plan, stored_names
from orchestrator.sweep_file import parse_config
from orchestrator.testing.cli import orchestrate
from orchestrator.testing.results import load_study
from orchestrator.testing.sweeps import sweep_document, write_sweep


def run(folder: Path, pruner: str, trials: int, seeds: int) -> tuple[float, int, str]:
    document = sweep_document(
        folder,
        f"pruned_{pruner}",
        seeds=list(range(seeds)),
        alds={"mode": "factorize"},
        imp={"cycles": 6, "prune_fraction": 0.4},
        search={
            "sampler": "random",
            "pruner": pruner,
            "n_trials": trials,
            "space": {"alds.rate": {"low": 0.0, "high": 0.95, "step": 0.05}},
        },
    )
    path = write_sweep(folder, document)
    start = time.perf_counter()
    result = orchestrate("sweep", str(path), cwd=folder, heartbeat=None, timeout=3600)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"orchestrate sweep failed:\n{result.stderr[-3000:]}")
    config = parse_config(document)
    ended = load_study(document).get_trials()
    pruned = [t for t in ended if t.state == TrialState.PRUNED]
    twins = [t for t in pruned if not plan.is_alds(plan.rate_of(config, t.params))]
    steps = sum(
        len(curve.curve_of(t) or []) for t in ended if stored_names.TRIAL_CURVE in t.system_attrs
    )
    line = (
        f"{pruner}: {seconds:.1f} s, {len(ended)} trials ({len(pruned)} pruned, of them "
        f"{len(twins)} twins), {steps} steps trained"
    )
    return seconds, steps, line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=12, help="sampled trials, twins aside")
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        measured = {}
        for pruner in ("none", "paired"):
            folder = Path(tmp) / pruner
            folder.mkdir()
            seconds, steps, line = run(folder, pruner, args.trials, args.seeds)
            measured[pruner] = (seconds, steps)

            print(line, flush=True)
        (t0, s0), (t1, s1) = measured["none"], measured["paired"]
        print(f"paired/none: time {t1 / t0:.2f}, steps {s1 / max(s0, 1):.2f}")


if __name__ == "__main__":
    main()
