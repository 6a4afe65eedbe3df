"""The study's queue: exact trial counts, repeats per seed, claiming, retries, racing workers."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
from optuna.trial import TrialState

from orchestrator import plan, stored_names, workspace
from orchestrator.study import counts, queue as queues, study as studies
from orchestrator.sweep_file import parse_config
from tests.conftest import config_of, drain, open_study


def test_queue_holds_every_trial_and_repeats_each_configuration_per_seed(tmp_path: Path) -> None:
    config = config_of(tmp_path)
    study, storage = open_study(tmp_path, config)
    assert queues.fill_queue(study, config) == 4  # baseline x 2 seeds + 2 placeholders
    assert queues.fill_queue(study, config) == 0  # a resumed sweep adds nothing
    trials = drain(study, storage, config)
    # Each sampled ALDS configuration brought its IMP-only twin at both seeds.
    twins = [t for t in trials if stored_names.TRIAL_TWIN_OF in t.user_attrs]
    assert len(twins) == 4
    assert len(trials) == plan.total_trials(config) + 4 == counts.expected(study, config) == 10
    assert all(t.state == TrialState.COMPLETE for t in trials)
    seeds_by_params: dict[tuple, list[int]] = {}
    for trial in trials:
        key = (trial.params["alds.rate"], trial.params["imp.prune_fraction"])
        seeds_by_params.setdefault(key, []).append(trial.user_attrs[stored_names.TRIAL_SEED])
    assert len(seeds_by_params) == 5
    assert all(sorted(seeds) == [0, 1] for seeds in seeds_by_params.values())
    assert seeds_by_params[(0.0, 0.2)] == [0, 1]  # the IMP-only baseline
    for _, fraction in seeds_by_params:
        assert (0.0, fraction) in seeds_by_params  # every ALDS schedule has its twin
    # An empty queue is never refilled by claiming.
    assert queues.claim_trial(study) is None
    assert len(study.get_trials()) == 10


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
    assert plan.total_trials(config) == 12
    study, storage = open_study(tmp_path, config)
    queues.fill_queue(study, config)
    trials = drain(study, storage, config)
    rates = sorted((t.params["alds.rate"], t.user_attrs[stored_names.TRIAL_SEED]) for t in trials)
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
    assert stale.user_attrs[stored_names.TRIAL_FAIL_REASON] == "worker stopped sending heartbeats"
    retry = study.get_trials(states=(TrialState.WAITING,))[-1]
    assert retry.system_attrs[stored_names.TRIAL_FAILED_TRIAL] == trial.number
    assert retry.params == params
    assert retry.user_attrs[stored_names.TRIAL_SEED] == trial.user_attrs[stored_names.TRIAL_SEED]
    assert queues.fail_stale(study, max_retries=1) == []  # once


CLAIMER = """
import sys, time
import optuna
from orchestrator.study import queue as queues
from orchestrator.study import study as studies

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


TWINNER = """
import sys, time
from orchestrator.study import queue as queues
from orchestrator.study import study as studies

url, start, worker = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
time.sleep(max(0.0, start - time.time()))
study, config = studies.load_study("queue", studies.open_storage(url), worker=worker)
while (claimed := queues.claim_trial(study)) is not None:
    trial, _ = claimed
    params = queues.suggest(trial, config, lock=lambda: studies.creation_lock(url))
    study.tell(trial, params["alds.rate"])
"""


def test_sampled_configurations_get_their_twin_once_per_seed_however_many_workers(
    tmp_path: Path,
) -> None:
    # Few distinct schedules, so workers often sample the same one at once.
    config = config_of(
        tmp_path,
        n_trials=16,
        space={
            "alds.rate": {"choices": [0.0, 0.3, 0.6]},
            "imp.prune_fraction": {"choices": [0.2, 0.3]},
        },
    )
    study, _ = open_study(tmp_path, config)
    queues.fill_queue(study, config)
    url = workspace.default_storage(config)
    start = time.time() + 3.0
    processes = [
        subprocess.Popen([sys.executable, "-c", TWINNER, url, str(start), str(i)]) for i in range(3)
    ]
    assert [p.wait(timeout=300) for p in processes] == [0, 0, 0]
    trials = optuna.load_study(study_name="queue", storage=url).get_trials()
    assert all(t.state == TrialState.COMPLETE for t in trials)
    runs = Counter(
        (
            t.params["alds.rate"],
            t.params["imp.prune_fraction"],
            t.user_attrs[stored_names.TRIAL_SEED],
        )
        for t in trials
    )
    schedules = {(f, s) for r, f, s in runs if r > 0}
    # Every schedule an ALDS trial ran has an IMP-only trial at that seed ...
    assert schedules and all(runs[(0.0, f, s)] >= 1 for f, s in schedules)
    # ... and no twin was enqueued twice, nor where the study already had one.
    twins = [t for t in trials if stored_names.TRIAL_TWIN_OF in t.user_attrs]
    assert all(t.params["alds.rate"] == 0.0 for t in twins)
    enqueued = Counter(
        (t.params["imp.prune_fraction"], t.user_attrs[stored_names.TRIAL_SEED]) for t in twins
    )
    assert all(count == 1 for count in enqueued.values())
    assert len(trials) == 16 + len(twins)


def test_a_trial_whose_retry_is_queued_is_failed_without_a_second_retry(tmp_path: Path) -> None:
    # Its worker requeued it and was killed before failing it: the stale path must not add
    # another retry.
    config = config_of(tmp_path)
    study, _ = open_study(tmp_path, config)
    queues.fill_queue(study, config)
    trial, _ = queues.claim_trial(study)
    running = study.trials[trial.number]
    assert queues.requeue(study, running, max_retries=None)
    before = len(study.trials)
    assert queues.fail_and_requeue(study, running, "stale", max_retries=2)
    assert len(study.trials) == before
    assert study.trials[trial.number].state == TrialState.FAIL
    retries = [
        t
        for t in study.trials
        if t.system_attrs.get(stored_names.TRIAL_FAILED_TRIAL) == trial.number
    ]
    assert len(retries) == 1
