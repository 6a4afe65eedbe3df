"""``orchestrator.open``: a sweep's results in a notebook, on a real finished sweep: the tables
``orchestrate report`` writes, by sweep file or by study name and storage, nothing written;
bad input named; and the repository's notebook executed against it."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import orchestrator
from orchestrator import ConfigError
from orchestrator.testing.cli import orchestrate, run_sweep
from orchestrator.testing.results import study_storage, tracking_uri
from orchestrator.testing.sweeps import sweep_document

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "docs" / "notebooks" / "quickstart.ipynb"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, Path]:
    """A finished two-seed sweep, and the report `orchestrate report` wrote of it."""
    folder = tmp_path_factory.mktemp("finished")
    document = sweep_document(folder, "notebook", seeds=[0, 1])
    path, _ = run_sweep(folder, document)
    report = orchestrate("report", str(path), "--output", str(folder / "report"), cwd=folder)
    assert report.returncode == 0, report.stderr[-3000:]
    return path, document, folder / "report"


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def _through_csv(table: pd.DataFrame) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(table.to_csv(index=False)))


def test_open_gives_every_table_the_report_writes(finished: tuple[Path, dict, Path]) -> None:
    path, document, report = finished
    workspace = Path(document["execution"]["workspace"])
    before = _files(workspace)
    results = orchestrator.open(path)
    written = sorted(report.glob("*.csv"))
    assert {p.stem for p in written} == set(results.tables)
    for csv in written:
        pd.testing.assert_frame_equal(_through_csv(results.table(csv.stem)), pd.read_csv(csv))
    assert len(results.trials) == 4 and set(results.trials["state"]) == {"COMPLETE"}
    assert len(results.steps) == 4 * (document["imp"]["cycles"] + 2)
    assert results.figure("accuracy_vs_remaining").axes
    # Read-only: nothing in the workspace changed, no report folder was made there.
    assert _files(workspace) == before


def test_a_study_by_name_storage_and_tracking_uri(finished: tuple[Path, dict, Path]) -> None:
    _, document, report = finished
    results = orchestrator.open(
        "notebook", storage=study_storage(document), tracking_uri=tracking_uri(document)
    )
    pd.testing.assert_frame_equal(
        _through_csv(results.table("endpoint")), pd.read_csv(report / "endpoint.csv")
    )
    assert results.reload().trials["number"].tolist() == results.trials["number"].tolist()


def test_open_takes_the_reports_margin_and_levels(finished: tuple[Path, dict, Path]) -> None:
    path, _, _ = finished
    results = orchestrator.open(path, margin=2.0, levels=[0.3])
    assert results.report.margin == pytest.approx(0.02)  # points, as report.margin
    assert results.table("at_sparsity")["sparsity"].round(6).unique().tolist() == [0.3]


def test_bad_input_is_named(finished: tuple[Path, dict, Path], tmp_path: Path) -> None:
    path, document, _ = finished
    with pytest.raises(ConfigError, match="no such file"):
        orchestrator.open(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"'notebook' is no sweep file: .* storage="):
        orchestrator.open("notebook")
    with pytest.raises(ConfigError, match=r"no study 'absent' \(studies: notebook"):
        orchestrator.open("absent", storage=study_storage(document))
    gone = f"sqlite:///{tmp_path / 'none' / 'study.db'}"
    with pytest.raises(ConfigError, match=r"no study storage at .*: no sweep has run with it"):
        orchestrator.open("notebook", storage=gone)
    assert not (tmp_path / "none").exists()  # and it was not created
    with pytest.raises(ConfigError, match="cannot open the study storage 'postgresql://"):
        orchestrator.open("notebook", storage="postgresql://nobody@127.0.0.1:9/none")
    with pytest.raises(KeyError, match="no table 'nope' in this report; tables: endpoint"):
        orchestrator.open(path).table("nope")


def test_import_orchestrator_stays_light() -> None:
    probe = (
        "import sys, orchestrator; orchestrator.open; "
        "print(' '.join(m for m in ('torch', 'optuna', 'mlflow', 'pandas') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_the_notebook_runs_on_a_finished_sweep(
    finished: tuple[Path, dict, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbclient
    import nbformat

    path, _, report = finished
    monkeypatch.setenv("NOTEBOOK_SWEEP", str(path))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()  # raises CellExecutionError on a failing cell
    shown = [
        output["data"]["text/plain"]
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "execute_result"
    ]
    assert shown[0].startswith("SweepResults('notebook' in sqlite:")
    endpoint = pd.read_csv(report / "endpoint.csv")
    assert any(endpoint["verdict"].iloc[0] in text for text in shown)
    assert any(text.startswith("<Figure") for text in shown)
