"""A new user's first hour (issue "The first hour"): check-first commands that tell the truth,
counts and names that add up, quiet output and strict YAML; a test per finding."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from orchestrator.cli import main
from orchestrator.testing.sweeps import sweep_document, write_sweep


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, " ".join(result.output.split())


# --------------------------------------------------------------------------- 1. check first


def test_an_objective_past_the_schedule_is_refused_before_anything_runs(tmp_path: Path) -> None:
    document = sweep_document(
        tmp_path,
        imp={"cycles": 2, "prune_fraction": 0.3},
        search={"objective": {"metric": "accuracy", "at": 0.9}},
    )
    path = write_sweep(tmp_path, document)
    expected = (
        f"error: {path}: search.objective.at: 0.9 is past the sparsity the schedule reaches: "
        "0.51 (2 IMP cycle(s) of 0.3, the least-pruned configuration); every trial would "
        "fail. Lower the target, or set imp.cycles: 7"
    )
    for command in (["validate"], ["sweep", "--dry-run"], ["sweep"]):
        code, output = _invoke(*command, str(path))
        assert (code, output) == (2, expected), command
    assert not (tmp_path / "ws").exists()  # nothing created
    # Within reach: 7 cycles leave 8.2% of the weights.
    document["imp"]["cycles"] = 7
    assert _invoke("validate", str(write_sweep(tmp_path, document)))[0] == 0
    # A searched fraction: its least value decides; ALDS-only sweeps start from their rate.
    document["imp"]["cycles"] = 2
    document["search"]["space"] = {"imp.prune_fraction": {"low": 0.3, "high": 0.9, "step": 0.3}}
    assert (
        "0.51 (2 IMP cycle(s) of 0.3"
        in _invoke("validate", str(write_sweep(tmp_path, document)))[1]
    )
    document["search"]["space"] = {"alds.rate": {"choices": [0.5, 0.8]}}
    document["search"]["enqueue_baseline"] = False
    code, output = _invoke("validate", str(write_sweep(tmp_path, document)))
    assert code == 2 and "0.755 (ALDS at rate 0.5, then 2 IMP cycle(s) of 0.3" in output
    document["search"]["objective"]["at"] = 0.75
    assert _invoke("validate", str(write_sweep(tmp_path, document)))[0] == 0


def test_missing_dataset_files_stop_validate_and_the_dry_run_as_they_stop_the_sweep(
    tmp_path: Path,
) -> None:
    document = sweep_document(tmp_path, dataset={"name": "cifar10", "root": str(tmp_path)})
    del document["dataset"]["synthetic"]
    path = write_sweep(tmp_path, document)
    said = {}
    for command in (["validate"], ["sweep", "--dry-run"], ["sweep"]):
        code, said[command[-1]] = _invoke(*command, str(path))
        assert code == 2, said
    assert said["validate"] == said["--dry-run"] == said["sweep"]
    assert said["sweep"].startswith(f"error: CIFAR-10 not found: {tmp_path}/cifar-10-batches-py")
    assert not (tmp_path / "ws").exists()


def test_a_dataset_root_that_is_not_a_folder_is_refused_not_replaced(tmp_path: Path) -> None:
    """Fashion-MNIST is installed system-wide here: a root that does not exist must not
    silently read that copy instead."""
    document = sweep_document(tmp_path, dataset={"name": "fashion-mnist", "root": "/no/such"})
    del document["dataset"]["synthetic"]
    path = write_sweep(tmp_path, document)
    expected = (
        "error: dataset.root: /no/such is not a folder; set it to the folder that holds the "
        "fashion-mnist files, or leave it out to look in"
    )
    for command in (["validate"], ["sweep", "--dry-run"], ["sweep"]):
        code, output = _invoke(*command, str(path))
        assert code == 2 and output.startswith(expected), (command, output)
