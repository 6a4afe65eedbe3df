"""The step counts behind the GPU-hours estimate of docs/results.md."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from orchestrator.config import load_config

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "estimate_sweep_cost", ROOT / "benchmarks" / "estimate_sweep_cost.py"
)
estimate = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = estimate  # its dataclass looks itself up there
_spec.loader.exec_module(estimate)


def test_alds_rate_sweep_counts_the_steps_the_results_doc_quotes() -> None:
    config = load_config(ROOT / "sweeps" / "alds_rate.yaml")
    # Fully-connected 20% per cycle: 0.8^14 <= 5% < 0.8^13; conv 15%: 0.85^19 <= 5% < 0.85^18.
    assert estimate.cycles_needed(config, 0.2) == 14
    assert estimate.cycles_needed(config, 0.15) == 19
    work = estimate.workload(config)
    assert work.dense_steps == 3 * 30000 and work.trials == 15
    assert (work.trial_steps_low, work.trial_steps_high) == (1500 + 14 * 30000, 1500 + 19 * 30000)
    low = work.dense_steps + 15 * work.trial_steps_low
    high = work.dense_steps + 15 * work.trial_steps_high
    assert (round(low / 1e6, 2), round(high / 1e6, 2)) == (6.41, 8.66)
