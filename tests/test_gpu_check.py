"""The GPU check's dry run: ``benchmarks/gpu_check.sh --device cpu --quick`` goes through every
code path of the real check (cuda tests, step timing against a bare loop, sweeps with one and
two workers on one device, the cost estimate) and prints its one table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run_prints_every_measurement() -> None:
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--quick"],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHON": sys.executable},  # the interpreter under test
    )
    assert done.returncode == 0, done.stderr[-3000:]
    table = done.stdout[done.stdout.index("| measurement | setting | result |") :].splitlines()
    rows = [line.split(" | ")[0].removeprefix("| ") for line in table[2:]]
    assert rows.count("step time") == 8  # two networks x AMP x channels-last
    assert rows.count("sweep throughput") == 2
    assert {"device", "cuda tests", "cost", "check"} <= set(rows)
    # Without a GPU the cuda tests are reported as not applicable, not as passed; on a GPU
    # host they run.
    (tests,) = [line for line in table if line.startswith("| cuda tests")]
    if torch.cuda.is_available():
        assert "passed" in tests and "skipped" not in tests
    else:
        assert "skipped" in tests and "passed" not in tests
    for line in table:
        if line.startswith("| step time"):
            ratio = float(line.rsplit("ratio ", 1)[1].split()[0])
            assert ratio > 0
