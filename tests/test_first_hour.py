"""A new user's first hour (issue "The first hour"): check-first commands that tell the truth,
counts and names that add up, quiet output and strict YAML; a test per finding."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args

import click
import optuna
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from mlflow import MlflowClient
from pydantic import BaseModel

from orchestrator import launchers, plan, stored_names
from orchestrator.cli import main
from orchestrator.config import SweepConfig
from orchestrator.report.options import levels_within_reach
from orchestrator.sweep_file import numeric_ranges, parse_config
from orchestrator.testing.cli import orchestrate
from orchestrator.testing.results import study_storage, tracking_uri
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
    # With download: true the files come at the sweep's start: validate says so.
    document["dataset"]["download"] = True
    code, output = _invoke("validate", str(write_sweep(tmp_path, document)))
    assert code == 0 and "note: the data files are not here yet: dataset.download fetches" in (
        output
    )


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


# --------------------------------------------------------------------------- 2, 3. storages


def test_validate_plans_against_the_storage_it_is_given_and_reads_create_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_sweep(tmp_path, sweep_document(tmp_path))
    other = f"sqlite:///{tmp_path / 'other.db'}"
    code, output = _invoke("sweep", str(path), "--enqueue-only", "--storage", other)
    assert code == 0 and f"study 'tiny' in {other} (created now): " in output, output
    own = f"sqlite:///{tmp_path / 'ws' / 'tiny' / 'study.db'}"
    # Where the sweep's own storage does not exist, reading commands say so and create nothing.
    for command in ("status", "report"):
        code, output = _invoke(command, str(path))
        assert (code, output) == (
            2,
            f"error: no study storage at {own}: no sweep has run with it (orchestrate sweep "
            "creates it); a sweep run with --storage is read with the same --storage (or "
            "ORCHESTRATE_STORAGE)",
        )
    assert "against its study storage " + own in _invoke("validate", str(path))[1]
    assert not (tmp_path / "ws" / "tiny" / "study.db").exists()
    # --storage, or the variable, is where validate plans and status reads.
    assert (
        f"against its study storage {other}: "
        in _invoke("validate", str(path), "--storage", other)[1]
    )
    monkeypatch.setenv("ORCHESTRATE_STORAGE", other)
    assert f"against its study storage {other}: " in _invoke("validate", str(path))[1]
    code, output = _invoke("status", str(path))
    assert code == 0 and "queued 2" in output, output
    # A study the storage lacks: the message names the storage it looked in.
    code, output = _invoke("status", "--study", "absent")
    assert (code, output) == (2, f"error: no study 'absent' (studies: tiny) at {other}")


# --------------------------------------------------------------------------- 8. quiet output


def test_output_to_a_pipe_is_not_wrapped(tmp_path: Path) -> None:
    folder = tmp_path / ("a-long-folder-name-" * 4)
    folder.mkdir()
    path = write_sweep(folder, sweep_document(folder))
    result = orchestrate("validate", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if "valid sweep" in x)
    assert line.startswith(str(path)) and line.endswith(")") and "config hash" in line
    assert result.stderr == ""  # no library warning, no notice


# --------------------------------------------------------------------------- 7. the CLI


def test_the_help_ranges_are_the_schemas_and_errors_name_the_flag(tmp_path: Path) -> None:
    ranges = numeric_ranges()
    for option in launchers.options():
        if option.path in ranges:  # every numeric field's flag carries its range
            low, high = option.bounds or (None, None)
            assert ranges[option.path] == f"[{low}, {high}]", option.flag
    # The sweep command's own flags that set a numeric field (--workers-per-device).
    for param in main.commands["sweep"].params:
        field = launchers.FLAGS.get(param.name or "")
        if field in ranges:
            kind = param.type
            assert isinstance(kind, click.IntRange), param.name
            assert ranges[field] == f"[{kind.min}, {kind.max}]", param.name
    path = str(write_sweep(tmp_path, sweep_document(tmp_path)))
    code, output = _invoke("sweep", path, "--dry-run", "--launcher", "slurm", "--workers", "0")
    assert code == 2 and "Invalid value for '--workers': 0 is not in the range 1<=x<=100000" in (
        output
    )
    code, output = _invoke("sweep", path, "--dry-run", "--devices", "gpu0")
    assert (code, output) == (
        2,
        "error: --devices gpu0: devices must be 'auto', 'cpu' or GPU indices like "
        "'0,1,3' (got 'gpu0')",
    )
    assert "params" not in output
    code, output = _invoke("sweep", path, "--dry-run", "--storage", "x.db")
    assert (code, output) == (
        2,
        f"error: the study storage 'x.db' is not a URL: a SQLite file is "
        f"sqlite:///{Path('x.db').resolve()} (docs/sweep.md, 'The study')",
    )


# --------------------------------------------------------------------------- 9. strict YAML


def test_duplicate_keys_quoted_numbers_and_long_values_are_refused_plainly(
    tmp_path: Path,
) -> None:
    cases = {
        "name: x\nimp:\n  cycles: 3\n  cycles: 4\n": (
            "YAML error at line 4, column 3: key 'cycles' given twice (first on line 3)"
        ),
        'name: x\ntrain:\n  epochs: "3"\n': (
            "train.epochs: '3' is a string; write the number without quotes"
        ),
        'name: x\ntrain:\n  milestones: [1, "2"]\n': (
            "train.milestones: '2' is a string; write the number without quotes"
        ),
        f"name: x\nmodel: {'a' * 10_000}\n": "model.name: unknown model 'aaaa",
    }
    for index, (text, expected) in enumerate(cases.items()):
        path = tmp_path / f"case{index}.yaml"
        path.write_text(text)
        code, output = _invoke("validate", str(path))
        assert code == 2 and f"{path}: " in output and expected in output, output
        assert len(output) < 600, output  # a long value is cut
    # A word a number field also takes stays a word; 3e-4 unquoted is a number (YAML 1.1
    # alone would read it as a string).
    path = tmp_path / "final.yaml"
    path.write_text("name: x\ntrain: {lr: 3e-4}\nsearch:\n  objective: {at: final}\n")
    code, output = _invoke("validate", str(path))
    assert code == 0 and "lr: 0.0003" in output


def test_a_sampled_space_smaller_than_its_budget_is_warned_about(tmp_path: Path) -> None:
    search = {"sampler": "tpe", "space": {"alds.rate": {"choices": [0.0, 0.6]}}}
    path = write_sweep(tmp_path, sweep_document(tmp_path, search=search))
    code, output = _invoke("validate", str(path))
    assert (
        code == 0
        and (
            "warning: search: the space holds 2 configuration(s) but the tpe sampler is given 10 "
            "per seed (10 trials): it will draw some again. Use sampler: grid (each once), or "
            "n_trials: 2"
        )
        in output
    )
    search["n_trials"] = 2
    path = write_sweep(tmp_path, sweep_document(tmp_path, search=search))
    assert "warning" not in _invoke("validate", str(path))[1]


# --------------------------------------------------------------------------- 10. the docs

ROOT = Path(__file__).resolve().parent.parent


def _schema_default(path: str) -> Any:
    """The schema's default of a dotted path (an optional section: its own fields')."""
    model: type[BaseModel] = SweepConfig
    *sections, leaf = path.split(".")
    for part in sections:
        annotation = model.model_fields[part].annotation
        model = next(
            a
            for a in (annotation, *get_args(annotation))
            if isinstance(a, type) and issubclass(a, BaseModel)
        )
    value = model.model_fields[leaf].get_default(call_default_factory=True)
    if isinstance(value, BaseModel):  # a section written as its name (model: conv6)
        return value.name  # type: ignore[attr-defined]
    return list(value) if isinstance(value, tuple) else value


def test_the_docs_say_what_the_tool_does() -> None:
    # Every default config.md gives as a value is the schema's.
    text = (ROOT / "docs" / "config.md").read_text()
    rows = re.findall(r"^\| `([a-z_.]+)` \| `([^`]*)` \|", text, re.MULTILINE)
    assert len(rows) > 25
    for path, shown in rows:
        said = yaml.safe_load(shown)
        said = float(said) if re.fullmatch(r"\d+e-?\d+", shown) else said
        assert said == _schema_default(path), path
    assert "| `search.n_trials` | the whole grid; else 10 configurations × seeds |" in text
    # The growth steps of sweep.md: each plan's count is the code's for the YAML it names, and
    # its parts add up.
    quickstart = yaml.safe_load((ROOT / "sweeps" / "quickstart.yaml").read_text())
    table = (ROOT / "docs" / "sweep.md").read_text()
    plans = re.findall(
        r"^\| (1|2|3) \| .*? \| `(\d+) trials: (\d+) done, (.*?)` \|", table, re.MULTILINE
    )
    assert [step for step, *_ in plans] == ["1", "2", "3"]
    variants = [
        {**quickstart, "seeds": [0]},
        quickstart,
        {
            **quickstart,
            "search": {
                **quickstart["search"],
                "space": {"alds.rate": {"choices": [0.0, 0.3, 0.6, 0.45]}},
            },
        },
    ]
    for (step, total, done, rest), document in zip(plans, variants, strict=True):
        assert int(total) == plan.total_trials(parse_config(document)), step
        others = [int(n) for n in re.findall(r"(\d+) to (?:copy|train)", rest)]
        assert int(done) + sum(others) == int(total), step
    # One quickstart time, in the README, the report's guide and the YAML itself.
    said = "about 30 s on two cores once set up"
    for name in ("README.md", "docs/report.md", "sweeps/quickstart.yaml"):
        assert said in " ".join((ROOT / name).read_text().split()), name


def test_the_readme_names_every_option_of_every_command() -> None:
    """The README's command table against the click commands themselves."""
    rows = [
        line
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith("| `orchestrate ")
    ]
    for name, command in main.commands.items():
        said = " ".join(row for row in rows if row.startswith(f"| `orchestrate {name} "))
        assert said, f"the README has no row for `orchestrate {name}`"
        for option in command.params:
            if isinstance(option, click.Option) and not option.hidden:
                flag = max(option.opts, key=len)
                assert flag in said, f"README: `orchestrate {name}` does not name {flag}"


# --------------------------------------------------------------------------- 6. the report


def test_a_report_logs_whole_or_not_at_all_and_names_a_yaml_the_study_does_not_hold(
    tmp_path: Path,
) -> None:
    document = sweep_document(tmp_path, seeds=[0, 1])
    path = write_sweep(tmp_path, document)
    first = orchestrate("sweep", str(path), cwd=tmp_path)
    assert first.returncode == 0 and first.stderr == ""  # no library notice on a first sweep
    client = MlflowClient(tracking_uri(document))
    parent = optuna.load_study(study_name="tiny", storage=study_storage(document)).user_attrs[
        stored_names.STUDY_PARENT_RUN_ID
    ]

    def reports() -> list[str]:
        return [a.path for a in client.list_artifacts(parent, "report") if a.is_dir]

    # One name for a configuration: the status, the MLflow runs (with the seed).
    code, output = _invoke("status", str(path))
    assert "│ 2 │ COMPLETE │ 0 │ ALDS 0.5 · prune 0.5 │" in output.replace("  ", " ")
    names = {
        r.info.run_name
        for r in client.search_runs([r.info.experiment_id for r in [client.get_run(parent)]])
    }
    assert {"ALDS 0.5 · prune 0.5 · seed 0", "IMP only · prune 0.5 · seed 1"} <= names
    # --no-log: the files only.
    code, output = _invoke("report", str(path), "--no-log", "--output", str(tmp_path / "out"))
    assert code == 0 and "logged" not in output and reports() == []
    assert (tmp_path / "out" / "report.md").is_file()
    # The IMP-only arm's step 1 is no ALDS; no controls asked, no controls table.
    curves = pd.read_csv(tmp_path / "out" / "curves.csv")
    first = curves[curves["step"] == 1].set_index("alds.rate")["phase"].to_dict()
    assert first == {0.0: "no alds", 0.5: "alds"}
    assert not (tmp_path / "out" / "controls.csv").exists()
    # The default levels are those the schedule reaches (2 cycles of 50%: 75% at most); a
    # level asked for past it is "not reached", not short of seeds.
    assert set(pd.read_csv(tmp_path / "out" / "at_sparsity.csv")["sparsity"]) == {0.5}
    code, _ = _invoke(
        "report",
        str(path),
        "--no-log",
        "--output",
        str(tmp_path / "deep"),
        "--sparsity-levels",
        "0.5,0.9",
    )
    deep = pd.read_csv(tmp_path / "deep" / "at_sparsity.csv").set_index(["sparsity", "config"])
    assert code == 0 and deep.loc[(0.9, "alds.rate=0.5"), "verdict"] == "not reached"
    assert deep.loc[(0.5, "alds.rate=0.5"), "verdict"] == "too few seeds (fewer than 3)"
    # The answer first, in words, from the primary endpoint's verdicts.
    text = (tmp_path / "out" / "report.md").read_text().splitlines()
    assert text[2].startswith("**In short (the primary endpoint, ALDS + IMP minus its IMP-only")
    assert "ALDS 0.5 · prune 0.5: too few seeds (fewer than 3) (" in text[2]
    assert "2 seed pairs" in text[2]
    # Each logged report whole in a folder of its own, the latest named by a tag.
    folders = []
    for levels in ("0.5", "0.3"):
        code, output = _invoke("report", str(path), "--sparsity-levels", levels)
        assert code == 0, output
        folders.append(re.search(r"under (report/\S+)/", output).group(1))
    assert sorted(reports()) == sorted(folders) and folders[0] != folders[1]
    assert client.get_run(parent).data.tags[stored_names.TAG_REPORT_LATEST] == folders[1]
    # An older YAML (one seed fewer): the report is the study's, and says so.
    document["seeds"] = [0]
    older = tmp_path / "older.yaml"
    older.write_text(yaml.safe_dump(document))
    code, output = _invoke("report", str(older), "--no-log")
    assert (
        code == 0
        and (
            f"note: {older}: its seeds ([0]) is not the study's ([0, 1]); this reports the "
            "study's trials, as its last start left them"
        )
        in output
    )


def test_the_default_levels_follow_the_range_the_sweep_covers(tmp_path: Path) -> None:
    two_cycles = parse_config(sweep_document(tmp_path))  # 2 cycles of 50%: 75% at most
    assert levels_within_reach(two_cycles) == (0.5,)
    quickstart = parse_config(yaml.safe_load((ROOT / "sweeps" / "quickstart.yaml").read_text()))
    assert levels_within_reach(quickstart) == (0.5,)  # 3 cycles of 30%: 65.7%
    deep = parse_config(sweep_document(tmp_path, imp={"cycles": 20, "prune_fraction": 0.2}))
    assert levels_within_reach(deep) == (0.5, 0.8, 0.9, 0.95)
    shallow = parse_config(sweep_document(tmp_path, imp={"cycles": 1, "prune_fraction": 0.3}))
    assert levels_within_reach(shallow) == (0.3,)
