"""The step counts behind the GPU-hours estimate of docs/results.md."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.sweep_file import load_config

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


def test_the_estimate_times_the_scaled_network_and_prints_the_assumed_gpu_column() -> None:
    command = [sys.executable, str(ROOT / "benchmarks" / "estimate_sweep_cost.py")]
    command += [str(ROOT / "sweeps" / "fashion_mnist_conv.yaml"), "--width", "0.125"]
    done = subprocess.run(
        [*command, "--steps", "1", "--repeats", "1", "--gpu-tflops", "10,20"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "conv6 (width 0.125) on fashion-mnist" in done.stdout
    # The GPU column is the same FLOPs at the assumed throughputs: twice as long at 10 as at 20.
    for line in (line for line in done.stdout.splitlines() if "cycles:" in line):
        column = line.split("(assumed, not timed): ")[1].removesuffix(" GPU-hours")
        fast, slow = (float(value) for value in column.split("-"))
        assert slow == pytest.approx(2 * fast, abs=0.1)
    refused = subprocess.run(
        [*command, "--gpu-tflops", "20,10"], capture_output=True, text=True, check=False
    )
    assert refused.returncode == 2 and "--gpu-tflops" in refused.stderr


def test_the_estimate_counts_the_images_of_the_sweeps_dataset() -> None:
    config = load_config(ROOT / "sweeps" / "fashion_mnist_conv.yaml")
    assert estimate.dataset_images(config) == (60_000, 10_000)
    work = estimate.workload(config)
    # 12,000 training images at batch 60: 200 steps per epoch, one epoch per run, 5 dense.
    assert work.dense_steps == 5 * 200 and work.trials == 25
