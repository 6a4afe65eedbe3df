"""The study's queue: exact trial counts, repeats per seed, claiming, retries, racing workers."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from orchestrator import queue as queues
from orchestrator import study as studies
from orchestrator.config import parse_config
from tests.conftest import config_of, drain, open_study


def test_queue_holds_every_trial_and_repeats_each_configuration_per_seed(tmp_path: Path) -> None:
    config = config_of(tmp_path)
    study, storage = open_study(tmp_path, config)
    assert queues.fill_queue(study, config) == 4  # baseline x 2 seeds + 2 placeholders
    assert queues.fill_queue(study, config) == 0  # a resumed sweep adds nothing
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
    assert queues.claim_trial(study) is None
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
    queues.fill_queue(study, config)
    trials = drain(study, storage, config)
    rates = sorted((t.params["alds.rate"], t.user_attrs["seed"]) for t in trials)
    assert rates == [(r, s) for r in (0.0, 0.2, 0.4, 0.6) for s in (0, 1, 2)]


def test_stale_trial_is_failed_with_its_reason_and_retried_with_its_parameters(
    tmp_path: Path,
) -> None:
    config = config_of(tmp_path)
    study, storage = open_study(tmp_path, config, heartbeat_interval=1)
    queues.fill_queue(study, config)
    trial, queued = queues.claim_trial(study)
    params = queues.suggest(trial, config)
    storage.record_heartbeat(queued._trial_id)  # the worker beat once, then died
    time.sleep(5)
    closed = []
    failed = queues.fail_stale(
        study, max_retries=1, on_failed=lambda s, t, reason: closed.append((t.number, reason))
    )
    assert failed == [trial.number]
    assert closed == [(trial.number, "worker stopped sending heartbeats")]
    stale = study.trials[trial.number]
    assert stale.state == TrialState.FAIL
    assert stale.user_attrs["fail_reason"] == "worker stopped sending heartbeats"
    retry = study.get_trials(states=(TrialState.WAITING,))[-1]
    assert retry.system_attrs["failed_trial"] == trial.number
    assert retry.params == params and retry.user_attrs["seed"] == trial.user_attrs["seed"]
    assert queues.fail_stale(study, max_retries=1) == []  # once


CLAIMER = """
import sys, time
import optuna
from orchestrator import queue as queues
from orchestrator import study as studies

url, start, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
time.sleep(max(0.0, start - time.time()))
storage = studies.open_storage(url)
study = optuna.load_study(study_name="race", storage=storage)
numbers = []
while (claimed := queues.claim_trial(study)) is not None:
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
