"""The study's queue: exact trial counts, repeats per seed, claiming, resuming, retries."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from orchestrator import study as studies
from orchestrator.config import ConfigError, parse_config


def config_of(tmp_path: Path, **search: object):
    return parse_config(
        {
            "name": "queue",
            "seeds": [0, 1],
            "search": {
                "sampler": "random",
                "n_trials": 6,
                "space": {
                    "alds.rate": {"low": 0.0, "high": 0.8, "step": 0.1},
                    "imp.prune_fraction": {"low": 0.1, "high": 0.4},
                },
                **search,
            },
            "execution": {"workspace": str(tmp_path)},
        }
    )


def open_study(tmp_path: Path, config, **kwargs):
    storage = studies.open_storage(studies.default_storage(config), **kwargs)
    return studies.create_or_resume(config, storage), storage


def drain(study: optuna.Study, storage, config) -> list[optuna.trial.FrozenTrial]:
    while (claimed := studies.claim_trial(study)) is not None:
        trial, _ = claimed
        params = studies.suggest(trial, config)
        study.tell(trial, params["alds.rate"])
    return study.get_trials()


def test_queue_holds_every_trial_and_repeats_each_configuration_per_seed(tmp_path: Path) -> None:
    config = config_of(tmp_path)
    study, storage = open_study(tmp_path, config)
    assert studies.fill_queue(study, config) == 4  # baseline x 2 seeds + 2 placeholders
    assert studies.fill_queue(study, config) == 0  # a resumed sweep adds nothing
    trials = drain(study, storage, config)
    assert len(trials) == config.total_trials == 6
    assert all(t.state == TrialState.COMPLETE for t in trials)
    seeds_by_params: dict[tuple, list[int]] = {}
    for trial in trials:
        key = (trial.params["alds.rate"], trial.params["imp.prune_fraction"])
        seeds_by_params.setdefault(key, []).append(trial.user_attrs["seed"])
    assert len(seeds_by_params) == 3
    assert all(sorted(seeds) == [0, 1] for seeds in seeds_by_params.values())
    assert seeds_by_params[(0.0, 0.2)] == [0, 1]  # the IMP-only baseline
    # An empty queue is never refilled by claiming.
    assert studies.claim_trial(study) is None
    assert len(study.get_trials()) == 6


def test_grid_sampler_enqueues_the_whole_grid(tmp_path: Path) -> None:
    config = parse_config(
        {
            "name": "grid",
            "seeds": [0, 1, 2],
            "search": {
                "sampler": "grid",
                "space": {"alds.rate": {"low": 0.0, "high": 0.6, "step": 0.2}},
            },
            "execution": {"workspace": str(tmp_path)},
        }
    )
    assert config.total_trials == 12
    study, storage = open_study(tmp_path, config)
    studies.fill_queue(study, config)
    trials = drain(study, storage, config)
    rates = sorted((t.params["alds.rate"], t.user_attrs["seed"]) for t in trials)
    assert rates == [(r, s) for r in (0.0, 0.2, 0.4, 0.6) for s in (0, 1, 2)]


def test_changed_config_is_refused_and_fresh_starts_over(tmp_path: Path) -> None:
    config = config_of(tmp_path)
    study, storage = open_study(tmp_path, config)
    studies.fill_queue(study, config)
    changed = config.with_params({"imp.cycles": 9})
    with pytest.raises(ConfigError, match="different config"):
        studies.create_or_resume(changed, storage)
    fresh = studies.create_or_resume(changed, storage, fresh=True)
    assert fresh.get_trials() == []


def test_load_study_returns_the_stored_config_and_names_missing_studies(tmp_path: Path) -> None:
    config = config_of(tmp_path)
    _, storage = open_study(tmp_path, config)
    _, loaded = studies.load_study("queue", storage)
    assert loaded == config
    with pytest.raises(ConfigError, match=r"no study 'other'.*queue"):
        studies.load_study("other", storage)


def test_stale_trial_is_failed_and_retried_with_its_parameters(tmp_path: Path) -> None:
    config = config_of(tmp_path)
    study, storage = open_study(tmp_path, config, heartbeat_interval=1, max_retries=1)
    studies.fill_queue(study, config)
    trial, queued = studies.claim_trial(study)
    params = studies.suggest(trial, config)
    storage.record_heartbeat(queued._trial_id)  # the worker beat once, then died
    time.sleep(5)
    optuna.storages.fail_stale_trials(study)
    assert study.trials[trial.number].state == TrialState.FAIL
    retry = study.get_trials(states=(TrialState.WAITING,))[-1]
    assert retry.system_attrs["failed_trial"] == trial.number
    assert retry.params == params and retry.user_attrs["seed"] == trial.user_attrs["seed"]


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
    studies.fill_queue(study, config)
    while (claimed := studies.claim_trial(study)) is not None:
        trial, _ = claimed
        rate = studies.suggest(trial, config)["alds.rate"]
        study.tell(trial, [1.0 - rate / 2, 1000 * (1.0 - rate)])
    assert len(study.trials) == 4
    assert study.best_trials  # the Pareto front


CLAIMER = """
import sys, time
import optuna
from orchestrator import study as studies

url, start, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
time.sleep(max(0.0, start - time.time()))
storage = studies.open_storage(url)
study = optuna.load_study(study_name="race", storage=storage)
numbers = []
while (claimed := studies.claim_trial(study)) is not None:
    trial, _ = claimed
    numbers.append(trial.number)
    study.tell(trial, 0.0)
open(out, "w").write(" ".join(map(str, numbers)))
"""


def test_processes_racing_on_one_sqlite_study_claim_each_trial_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race' / 'study.db'}"
    study = optuna.create_study(study_name="race", storage=studies.open_storage(url))
    for index in range(60):
        study.enqueue_trial({"x": float(index)}, skip_if_exists=False)
    start = time.time() + 3.0  # every process past its imports before the race begins
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, url, str(start), str(tmp_path / f"claimed-{i}")]
        )
        for i in range(4)
    ]
    assert [p.wait(timeout=300) for p in processes] == [0, 0, 0, 0]
    claimed = [int(n) for i in range(4) for n in (tmp_path / f"claimed-{i}").read_text().split()]
    assert sorted(claimed) == list(range(60))
    trials = optuna.load_study(study_name="race", storage=url).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 60


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
