"""The CLI skeleton: help, version, validate, and exit code 2 without a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator import __version__
from orchestrator.cli import main
from orchestrator.testing.cli import orchestrate

ROOT = Path(__file__).resolve().parent.parent


def test_help_and_version() -> None:
    runner = CliRunner()
    assert "validate" in runner.invoke(main, ["--help"]).output
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_validate_prints_config_and_space() -> None:
    result = CliRunner().invoke(main, ["validate", str(ROOT / "sweeps" / "alds_rate.yaml")])
    assert result.exit_code == 0, result.output
    assert "valid sweep 'alds_rate'" in result.output
    assert "alds.rate" in result.output and "lr: 0.0003" in result.output
    # The plan and the pruner's sparsity grid.
    assert "15 trials" in result.output and "29.29%, 50%," in result.output


def test_validate_bad_file_exits_2_with_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nimp: {prune_fraction: 1.5}\n")
    result = orchestrate("validate", str(path))
    assert result.returncode == 2
    assert "imp.prune_fraction" in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_missing_file_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2 and "no such file" in result.output


# Run in a fresh interpreter: this one has torch loaded already. The probe's last line lists
# the heavy modules the command imported.
_IMPORT_PROBE = """
import sys
from orchestrator.cli import main
main(sys.argv[1:], standalone_mode=False)
print(" ".join(name for name in ("torch", "mlflow", "optuna") if name in sys.modules) or "-")
"""


@pytest.mark.parametrize(
    "args",
    [["--help"], ["validate", str(ROOT / "sweeps" / "quickstart.yaml")]],
    ids=["help", "validate"],
)
def test_help_and_validate_import_neither_torch_nor_mlflow_nor_optuna(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "-"
