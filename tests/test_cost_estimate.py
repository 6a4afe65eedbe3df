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
    # 0.9^29 <= 5% < 0.9^28 and 0.7^9 <= 5% < 0.7^8.
    assert estimate.cycles_needed(config, 0.1) == 29
    assert estimate.cycles_needed(config, 0.3) == 9
    work = estimate.workload(config)
    assert work.dense_steps == 3 * 30000 and work.trials == 42
    assert (work.trial_steps_low, work.trial_steps_high) == (1500 + 9 * 30000, 1500 + 29 * 30000)
    low = work.dense_steps + 42 * work.trial_steps_low
    high = work.dense_steps + 42 * work.trial_steps_high
    assert (round(low / 1e6, 1), round(high / 1e6, 1)) == (11.5, 36.7)
