"""The chaos check (scripts/chaos.py) passes: a worker killed, the study's PostgreSQL restarted
and the MLflow server stopped mid-sweep change nothing in the results."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.mark.timeout(1500)
def test_faults_injected_into_a_sweep_change_nothing(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "chaos.py"), "--workdir", str(tmp_path / "run")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1400,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[-1] == "all checks passed"
    checks = [line for line in lines if line.startswith(("PASS", "FAIL"))]
    assert len(checks) >= 12 and all(line.startswith("PASS") for line in checks)
    for fault in ("killed worker", "PostgreSQL stopped", "MLflow server stopped"):
        assert any(fault in line for line in lines), fault
