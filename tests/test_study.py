"""The study: create, resume or refuse, load by name, bad storage, several processes opening it."""

from __future__ import annotations

import subprocess
import sys
import time
import typing
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

from orchestrator import stored_names
from orchestrator.cli import main
from orchestrator.config import ConfigError, SearchConfig, SweepConfig
from orchestrator.study import queue as queues, study as studies
from orchestrator.sweep_file import parse_config
from orchestrator.trial.identity import experiment_hash
from tests.conftest import config_of, open_study


def test_a_changed_config_becomes_the_studys_and_fresh_starts_over(tmp_path: Path) -> None:
    config = config_of(tmp_path)
    study, storage = open_study(tmp_path, config)
    queues.fill_queue(study, config)
    changed = config.with_params({"imp.cycles": 9})
    grown = studies.create_or_resume(changed, storage)
    assert len(grown.get_trials()) == len(study.get_trials()) > 0
    assert studies.stored_config(grown) == changed
    assert grown.user_attrs[stored_names.STUDY_CONFIG_HISTORY] == [experiment_hash(config)]
    other_objective = changed.with_params({"search.objective": [{"metric": "loss"}]})
    with pytest.raises(ConfigError, match=r"search\.objective"):
        studies.create_or_resume(other_objective, storage)
    fresh = studies.create_or_resume(changed, storage, fresh=True)
    assert fresh.get_trials() == []


def test_a_sweep_resumed_with_other_launch_fields_keeps_its_study(tmp_path: Path) -> None:
    config = config_of(tmp_path)
    study, storage = open_study(tmp_path, config)
    queues.fill_queue(study, config)
    relaunched = config.with_params(
        {
            "execution.launcher": "slurm",
            "execution.slurm.workers": 16,
            "execution.devices": "cpu",
            "execution.workers_per_device": 3,
        }
    )
    resumed = studies.create_or_resume(relaunched, storage)
    assert len(resumed.get_trials()) == len(study.get_trials()) > 0


def test_a_hung_storage_call_counts_as_an_outage(tmp_path: Path, monkeypatch) -> None:
    from orchestrator.study import retrying_storage

    config = config_of(tmp_path)
    _, storage = open_study(tmp_path, config)
    assert not storage.recently_down(60)
    monkeypatch.setattr(retrying_storage, "SLOW_CALL_SECONDS", 0.2)
    inner = storage.inner
    slow = inner.get_all_studies

    def hung(*args, **kwargs):  # a journal on a stalled filesystem: no error, just late
        time.sleep(0.4)
        return slow(*args, **kwargs)

    monkeypatch.setattr(inner, "get_all_studies", hung)
    storage.get_all_studies()
    assert storage.recently_down(60)


def test_load_study_returns_the_stored_config_and_names_missing_studies(tmp_path: Path) -> None:
    config = config_of(tmp_path)
    _, storage = open_study(tmp_path, config)
    _, loaded = studies.load_study("queue", storage)
    assert loaded == config
    with pytest.raises(ConfigError, match=r"no study 'other'.*queue"):
        studies.load_study("other", storage)


def test_bad_storage_url_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot open the study storage"):
        studies.open_storage("nosuchdb://x")


def test_multi_objective_study_runs_without_a_pruner(tmp_path: Path) -> None:
    config = parse_config(
        {
            "name": "pareto",
            "search": {
                "sampler": "nsga2",
                "n_trials": 4,
                "objective": [
                    {"metric": "accuracy"},
                    {"metric": "params_nonzero", "direction": "minimize"},
                ],
                "space": {"alds.rate": {"low": 0.0, "high": 0.8}},
            },
            "execution": {"workspace": str(tmp_path)},
        }
    )
    study, _ = open_study(tmp_path, config)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["accuracy", "params_nonzero"]
    queues.fill_queue(study, config)
    while (claimed := queues.claim_trial(study)) is not None:
        trial, _ = claimed
        rate = queues.suggest(trial, config)["alds.rate"]
        study.tell(trial, [1.0 - rate / 2, 1000 * (1.0 - rate)])
    assert len(study.trials) == 4
    assert isinstance(study.pruner, optuna.pruners.NopPruner)
    # Accuracy falls and the weights kept fall with the rate: no trial dominates another, so
    # the Pareto front is every trial of distinct rate.
    rates = {t.params["alds.rate"] for t in study.trials}
    assert len(study.best_trials) == len(rates) >= 2


def test_processes_opening_a_new_sqlite_study_at_once_all_succeed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh' / 'study.db'}"
    opener = (
        "import sys, time; from orchestrator import study as studies; "
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time())); studies.open_storage(sys.argv[1])"
    )
    start = str(time.time() + 3.0)
    processes = [
        subprocess.Popen([sys.executable, "-c", opener, url, start], stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=300)[1].decode() for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0, 0], errors


def test_every_sampler_and_pruner_name_builds_its_own_kind() -> None:
    for field, table in (("sampler", studies.SAMPLERS), ("pruner", studies.PRUNERS)):
        allowed = typing.get_args(SearchConfig.model_fields[field].annotation)
        assert set(allowed) == set(table), field
    config = SweepConfig(name="x")
    built = {
        name: type(studies._sampler(config.with_params({"search.sampler": name})))
        for name in studies.SAMPLERS
    }
    assert built["tpe"] is optuna.samplers.TPESampler
    assert built["nsga2"] is optuna.samplers.NSGAIISampler
    assert built["qmc"] is optuna.samplers.QMCSampler
    pruner = studies._pruner(config.with_params({"search.pruner": "hyperband"}))
    assert isinstance(pruner, optuna.pruners.HyperbandPruner)


def test_an_unknown_sampler_is_refused_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("name: x\nsearch: {sampler: bayes}\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2 and "search.sampler" in result.output and "bayes" in result.output
    # A name the schema let through without an entry (a stored config of another version):
    # an error naming the field, not a silent RandomSampler.
    search = SearchConfig.model_construct(**{**SearchConfig().__dict__, "sampler": "bayes"})
    config = SweepConfig.model_construct(**{**SweepConfig(name="x").__dict__, "search": search})
    with pytest.raises(ConfigError, match=r"search.sampler: unknown sampler 'bayes'"):
        studies._sampler(config)
