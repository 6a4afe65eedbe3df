"""Results that grow: a trial's key, a sweep whose YAML changed runs only what is new, and
another sweep in the same storage reuses every finished result it shares (real sweeps)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from orchestrator import plan as plans, report as reports, stored_names
from orchestrator.curve import curve_of, encode_curve
from orchestrator.execution import sweep as sweeps
from orchestrator.study import growth, queue
from orchestrator.sweep_file import parse_config
from orchestrator.testing.cli import finish, orchestrate
from orchestrator.testing.results import curve, load_study, runs_of
from orchestrator.testing.sweeps import sweep_document, write_sweep
from orchestrator.trial import identity

# --------------------------------------------------------------------------- the key

BASE: dict[str, Any] = {"name": "keyed", "alds": {"rate": 0.3}}


def _key(
    document: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    device: str = "cpu",
    data: str = "d0",
    version: int = identity.RESULTS_VERSION,
) -> str:
    config = parse_config(_merged(BASE, document or {}))
    return identity.trial_key(config, params or {}, seed, device=device, data=data, version=version)


def _merged(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


# Fields that say how or where a sweep runs, or that mean nothing for the trial: same key.
SAME_KEY = [
    {"name": "another"},
    {"model": {"name": "conv6", "width": 1}},  # the plain name, as before widths
    {"report": {"margin": 0.5, "primary": 0.9}},  # how the report judges the results
    {"sequential": {"max_seeds": 9}, "report": {"margin": 0.5}},  # which seeds run
    {"seeds": [0, 1, 2]},
    {"execution": {"devices": "0,1", "workers_per_device": 3, "launcher": "slurm"}},
    {"execution": {"storage": "postgresql://db/optuna", "max_retries": 5}},
    {"execution": {"slurm": {"workers": 8}, "reuse": "any_version"}},
    {"search": {"sampler": "random", "n_trials": 40}},
    {"tracking": {"experiment": "elsewhere"}},
    {"dataset": {"root": "/data", "download": True}},
    {"train": {"amp": False, "channels_last": False}},  # act on CUDA only
    {"imp": {"factorized_rewind": "compressed"}},  # acts on a factorized network only
]

# Fields that determine the result: another key each.
OTHER_KEY = [
    {"model": "conv2"},
    {"model": {"name": "conv6", "width": 0.5}},
    {"dataset": {"train_subset": 100}},
    {"dataset": {"validation": 64}},
    {"dataset": {"augment": True}},
    {"dataset": {"synthetic": {"noise": 0.4}}},
    {"train": {"lr": 0.01}},
    {"train": {"optimizer": "sgd"}},
    {"train": {"epochs": 2}},
    {"train": {"batch_size": 30}},
    {"alds": {"rate": 0.5}},
    {"alds": {"mode": "factorize"}},
    {"alds": {"error": "bound"}},
    {"alds": {"k_candidates": [1, 2]}},
    {"alds": {"finetune_epochs": 1}},
    {"imp": {"cycles": 3}},
    {"imp": {"prune_fraction": 0.3}},
    {"imp": {"scope": "layer"}},
    {"imp": {"rewind": "early:10"}},
    {"imp": {"until_remaining": 0.1}},
    {"imp": {"epochs_per_cycle": 2}},
]


@pytest.mark.parametrize("change", SAME_KEY, ids=lambda c: str(c)[:60])
def test_the_key_ignores_what_does_not_act_on_the_trial(change: dict[str, Any]) -> None:
    assert _key(change) == _key()


@pytest.mark.parametrize("change", OTHER_KEY, ids=lambda c: str(c)[:60])
def test_the_key_changes_with_each_field_it_covers(change: dict[str, Any]) -> None:
    assert _key(change) != _key()


def test_the_key_covers_seed_device_data_version_and_resolves_the_trial() -> None:
    assert len({_key(seed=1), _key(device="cuda"), _key(data="d1"), _key(version=2)}) == 4
    assert _key() not in {_key(seed=1), _key(device="cuda"), _key(data="d1"), _key(version=2)}
    # Mixed precision acts on CUDA only.
    assert _key({"train": {"amp": False}}, device="cuda") != _key(device="cuda")
    # A searched parameter is the field set: alds.rate 0.3 searched or fixed is one trial,
    # and a searched 0 of a float field is 0.0.
    assert _key({"alds": {"rate": 0.0}}, {"alds.rate": 0.3}) == _key()
    assert _key(params={"alds.rate": 0}) == _key(params={"alds.rate": 0.0})
    # Of an IMP-only trial, the ALDS fields that mean nothing without ALDS are left out: the
    # twin of every sweep at one schedule and seed is one key.
    twin = {"alds.rate": 0.0}
    assert _key({"alds": {"mode": "factorize", "error": "bound"}}, twin) == _key(params=twin)
    assert _key({"alds": {"finetune_epochs": 1}}, twin) != _key(params=twin)
    # epochs_per_cycle left unset is train.epochs.
    assert _key({"imp": {"epochs_per_cycle": 1}}) == _key()


def test_a_key_is_frozen() -> None:
    """A new config field must default to what the code did before it: every existing key,
    and so every result a sweep can reuse, stays. Change this only with RESULTS_VERSION."""
    assert _key() == "6121c13087c57e1c"


# --------------------------------------------------------------------------- planning


def test_a_sampled_sweep_given_more_trials_keeps_what_it_sampled(tmp_path: Path) -> None:
    document = sweep_document(
        tmp_path,
        search={
            "sampler": "tpe",
            "n_trials": 2,
            "enqueue_baseline": False,
            "space": {"imp.prune_fraction": {"low": 0.2, "high": 0.6}},
        },
    )
    config = parse_config(document)
    study = optuna.create_study(study_name="tiny", directions=["maximize"])
    queue.fill_queue(study, config)
    assert len(study.trials) == 2
    # Two trials sampled and finished, each keyed (here: by its parameters and seed).
    for number in (0, 1):
        trial, _ = queue.claim_trial(study)
        assert trial.number == number
        params = queue.suggest(trial, config)
        trial.set_user_attr(stored_names.TRIAL_KEY, _text(params, 0))
        study.tell(trial, params["imp.prune_fraction"])
    grown = parse_config({**document, "search": {**document["search"], "n_trials": 5}})
    found = growth.assess(grown, study.get_trials(), lambda p, s: [_text(p, s)], {})
    # Its two configurations are kept (matched by their keys where given), three are new.
    assert (found.trials, found.placeholders, len(found.enqueue)) == (5, 3, 0)
    assert queue.fill_queue(study, grown, found) == 3
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 2


def test_a_seed_no_keyed_trial_ran_at_needs_no_keys(tmp_path: Path) -> None:
    """A key covers its seed: growing a sweep by a seed reads no key (nor the data a key's
    digest reads) for the new seed, unless a result elsewhere ran at it."""
    document = sweep_document(tmp_path, seeds=[0])
    config = parse_config(document)
    study = optuna.create_study(study_name="tiny", directions=["maximize"])
    queue.fill_queue(study, config)
    while (claimed := queue.claim_trial(study)) is not None:
        params = queue.suggest(claimed[0], config)
        claimed[0].set_user_attr(stored_names.TRIAL_KEY, _text(params, 0))
        study.tell(claimed[0], 0.5)
    grown = parse_config({**document, "seeds": [0, 1]})
    asked: list[int] = []

    def keys_of(params: dict[str, Any], seed: int) -> list[str]:
        asked.append(seed)
        return [_text(params, seed)]

    found = growth.assess(grown, study.get_trials(), keys_of, {})
    assert (found.done, len(found.enqueue), sorted(set(asked))) == (2, 2, [0])
    asked.clear()
    # A result of another study at seed 1: its keys are read, and it is found reusable.
    other = _text(plans.fixed_configurations(grown)[0], 1)
    found = growth.assess(grown, study.get_trials(), keys_of, {other: (1, "other")})
    assert (found.reusable, sorted(set(asked))) == (1, [0, 1])


def _text(params: dict[str, Any], seed: int) -> str:
    return json.dumps([params, seed], sort_keys=True)


# --------------------------------------------------------------------------- real sweeps


def _shared(folder: Path, name: str, **sections: Any) -> dict[str, Any]:
    """A tiny sweep whose study storage is shared with every other one in ``folder``."""
    document = sweep_document(folder, name, **sections)
    document["execution"]["storage"] = f"sqlite:///{folder / 'studies.db'}"
    return document


def _sweep(folder: Path, document: dict[str, Any], *extra: str) -> str:
    path = write_sweep(folder, document)
    result = orchestrate("sweep", str(path), *extra, cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _trials(document: dict[str, Any]) -> list[optuna.trial.FrozenTrial]:
    return load_study(document, document["execution"]["storage"]).get_trials()


def _trained(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    return [t for t in trials if stored_names.TRIAL_REUSED_FROM not in t.user_attrs]


def test_growing_a_sweep_runs_only_what_is_new_and_other_sweeps_reuse_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = _shared(tmp_path, "grows", seeds=[0, 1])
    out = _sweep(tmp_path, document)
    assert "4 trials: 0 done, 4 to train" in " ".join(out.split())
    first = {t.number: t for t in _trials(document)}
    config = parse_config(document)
    url = document["execution"]["storage"]

    # A results-version bump reuses nothing; a field every trial depends on neither.
    monkeypatch.setattr(identity, "RESULTS_VERSION", identity.RESULTS_VERSION + 1)
    assert sweeps.preview(config, url, lambda: "cpu").reused == 0
    monkeypatch.undo()
    changed = parse_config({**document, "train": {**document["train"], "lr": 0.01}})
    plan = sweeps.preview(changed, url, lambda: "cpu")
    assert (plan.reused, plan.to_run) == (0, 4)
    assert "every trial runs again" in plan.describe()

    # Three seeds: only the new seed's two trials run; the report pairs three seeds.
    document["seeds"] = [0, 1, 2]
    dry = _sweep(tmp_path, document, "--dry-run")
    assert "6 trials: 4 done, 2 to train" in " ".join(dry.split())
    assert len(_trials(document)) == 4  # a dry run changes nothing
    _sweep(tmp_path, document)
    trials = _trials(document)
    assert len(trials) == 6
    for trial in trials[:4]:  # the first four as they were
        assert trial.datetime_complete == first[trial.number].datetime_complete
    assert {t.user_attrs[stored_names.TRIAL_SEED] for t in trials[4:]} == {2}
    study = load_study(document, url)
    built = reports.build(study, parse_config(document))
    assert built.tables["versus_baseline"]["paired_n"].max() == 3

    # Another rate: a new generation of the study (Optuna fixes a categorical space's
    # choices), every earlier result reused from it, only the new rate's three trials run.
    document["search"]["space"]["alds.rate"]["choices"] = [0.0, 0.5, 0.25]
    out = _sweep(tmp_path, document)
    assert "9 trials: 0 done, 6 to copy from the study's earlier generation" in " ".join(
        out.split()
    )
    trials = _trials(document)
    assert len(trials) == 9
    assert sorted(t.params["alds.rate"] for t in _trained(trials)) == [0.25] * 3

    # A reused trial's curve in the sweep's experiment is the original's, value for value.
    client = MlflowClient(f"sqlite:///{tmp_path / 'ws' / 'grows' / 'mlflow.db'}")
    reused = next(t for t in trials if stored_names.TRIAL_REUSED_FROM in t.user_attrs)
    original = reused.user_attrs[stored_names.TRIAL_REUSED_FROM]
    assert reused.user_attrs[stored_names.TRIAL_RUN_ID] != original
    for metric in ("accuracy", "sparsity", "loss", "params_effective"):
        assert curve(client, reused.user_attrs[stored_names.TRIAL_RUN_ID], metric) == curve(
            client, original, metric
        )
    run = client.get_run(reused.user_attrs[stored_names.TRIAL_RUN_ID])
    assert run.data.tags[stored_names.TAG_REUSED_FROM] == original
    # The parent holds one run a trial of the new generation; the earlier generation's runs
    # are set aside under their archive's name, no longer its children.
    runs = runs_of(client, "grows")
    parent = load_study(document, url).user_attrs[stored_names.STUDY_PARENT_RUN_ID]
    children = [r for r in runs if r.data.tags.get(stored_names.TAG_PARENT_RUN_ID) == parent]
    assert len(children) == 9 and len({r.info.run_name for r in children}) == 9
    aside = [r for r in runs if stored_names.TAG_GENERATION in r.data.tags]
    assert len(aside) == 6 and original in {r.info.run_id for r in aside}
    assert all(r.info.run_name.endswith(f"({r.data.tags['earlier_generation']})") for r in aside)

    # Back to two seeds: the third seed's trials stay in the storage, out of the report.
    document["seeds"] = [0, 1]
    built = reports.build(load_study(document, url), parse_config(document))
    table = built.tables["trials"]
    assert len(table) == 6 and table[stored_names.TRIAL_KEY].notna().all()
    assert table[stored_names.TRIAL_REUSED_FROM].notna().sum() == 4  # the two earlier rates
    assert any("3 trial(s) of the study are left out" in note for note in built.notes)

    # A second sweep sharing the IMP-only twin trains it zero times.
    other = _shared(tmp_path, "shares", seeds=[0, 1])
    other["search"]["space"]["alds.rate"]["choices"] = [0.0, 0.75]
    alone = parse_config({**other, "execution": {**other["execution"], "reuse": "off"}})
    assert sweeps.preview(alone, url, lambda: "cpu").reused == 0  # reuse: off trains all
    out = _sweep(tmp_path, other)
    assert "4 trials: 0 done, 2 to copy from other studies, 2 to train" in " ".join(out.split())
    shared = _trials(other)
    assert sorted(t.params["alds.rate"] for t in _trained(shared)) == [0.75, 0.75]
    twins = [t for t in shared if t.params["alds.rate"] == 0.0]
    assert all(t.user_attrs[stored_names.TRIAL_REUSED_TRIAL].startswith("grows") for t in twins)


def test_two_sweeps_started_at_once_train_a_shared_result_once(tmp_path: Path) -> None:
    first = _shared(tmp_path, "left", seeds=[0])
    second = _shared(tmp_path, "right", seeds=[0])
    second["search"]["space"]["alds.rate"]["choices"] = [0.0, 0.75]
    running = [
        orchestrate("sweep", str(write_sweep(tmp_path, d)), cwd=tmp_path, background=True)
        for d in (first, second)
    ]
    for process in running:
        finish(process, check=True)
    trials = _trials(first) + _trials(second)
    assert all(t.state == TrialState.COMPLETE for t in trials)
    twins = [t for t in trials if t.params["alds.rate"] == 0.0]
    assert len(twins) == 2
    assert len({t.user_attrs[stored_names.TRIAL_KEY] for t in twins}) == 1
    # One trained it; the other waited for it, or found it done, and copied it.
    assert len(_trained(twins)) == 1
    assert curve_of(twins[0]) == curve_of(twins[1])


def test_the_compact_curve_gives_back_the_rows() -> None:
    rows = [
        {"step": 0, "phase": "dense", "cycle": 0, "accuracy": 0.9, "sparsity": 0.0},
        {"step": 1, "phase": "alds", "cycle": 0, "accuracy": 0.8, "sparsity": 0.3, "x": 1.5},
    ]
    trial = optuna.trial.create_trial(
        value=0.8, system_attrs={stored_names.TRIAL_CURVE: encode_curve(rows)}
    )
    assert curve_of(trial) == rows


def test_a_trial_from_before_keys_is_kept_only_while_its_yaml_is_unchanged(
    tmp_path: Path,
) -> None:
    config = parse_config(sweep_document(tmp_path))
    study = optuna.create_study(study_name="tiny", directions=["maximize"])
    queue.fill_queue(study, config)
    trial, _ = queue.claim_trial(study)
    queue.suggest(trial, config)
    study.tell(trial, 0.5)  # finished by a version that stored no key
    resumed = growth.assess(config, study.get_trials(), lambda p, s: ["k"], {}, keyless_match=True)
    assert (resumed.done, resumed.queued, len(resumed.enqueue)) == (1, 1, 0)
    changed = growth.assess(config, study.get_trials(), lambda p, s: ["k"], {})
    assert (changed.done, len(changed.enqueue)) == (0, 1)


def test_reuse_of_older_results_versions_is_an_explicit_opt_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    older = _key(version=1)
    monkeypatch.setattr(identity, "RESULTS_VERSION", 2)
    config = parse_config(BASE)
    own = identity.acceptable_keys(config, {}, 0, device="cpu", data="d0")
    assert own == [_key(version=2)] and older not in own
    opted = parse_config(_merged(BASE, {"execution": {"reuse": "any_version"}}))
    assert identity.acceptable_keys(opted, {}, 0, device="cpu", data="d0") == [own[0], older]
