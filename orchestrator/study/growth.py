"""What a start of a sweep runs, now that its YAML may have grown: every trial the YAML asks
for (each configuration at each seed, the twins of sampled configurations), less those a
finished result already answers, in this study or another of the same storage.

A sweep answers the seed's question in steps: three seeds, then two more, then another rate,
then a control. Each step plans the trials its YAML asks for by key
(:mod:`orchestrator.trial.identity`): a trial whose key this study has finished stays as it
is; one whose key another study finished is queued and copied from that result when a worker
claims it (:mod:`orchestrator.execution.lifecycle`); the rest are queued to train. Trials the
YAML no longer asks for stay in the storage, left out of counts and the report
(:func:`asks_for`).

:func:`assess` only reads; :func:`orchestrator.study.queue.fill_queue` enqueues what it found
missing. It reads trial states by name, so that ``validate`` assesses a new sweep without
importing Optuna.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator import plan as plans, stored_names
from orchestrator.config import SweepConfig
from orchestrator.study import optuna_internals
from orchestrator.sweep_file import PerConfig, describe_params
from orchestrator.trial import identity

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

KeysOf = Callable[[Mapping[str, Any], int], Sequence[str]]
"""``keys_of(params, seed)``: the keys whose results stand for that trial
(:func:`identity.acceptable_keys`)."""

__all__ = ["Growth", "KeysOf", "asks_for", "assess", "in_sweep", "provenance"]


@dataclass
class Growth:
    """The trials a sweep's YAML asks for, sorted by what answers them.

    Attributes:
        trials: what it asks for: its configurations (fixed, and sampled ones known so far,
            with their twins) at each seed, and the placeholders of those still to sample.
        done: finished in this study with this YAML's key (COMPLETE).
        ended: pruned or failed for good in this study with this key (kept; not retried).
        reusable: COMPLETE in another study: queued, and copied when claimed.
        earlier_generation: of them, results of this study's earlier generations (its
            archive studies, ``name@hash.N``).
        queued: already waiting or running in this study.
        enqueue: ``(params, user attributes)`` of the trials to queue now.
        placeholders: how many placeholders to add for configurations still to sample.
        finished_before: this study's COMPLETE trials, matched or not.
        renewed: the study starts a new generation (its trials move to an archive study,
            whose results come back by key).
        decisions: a sequential sweep's decisions at this look (``report.looks.records``),
            for the study to keep; None for a sweep of fixed seeds.
    """

    trials: int = 0
    done: int = 0
    ended: int = 0
    reusable: int = 0
    earlier_generation: int = 0
    queued: int = 0
    enqueue: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    placeholders: int = 0
    finished_before: int = 0
    renewed: bool = False
    decisions: dict[str, dict[str, Any]] | None = None

    @property
    def reused(self) -> int:
        """Trials a finished result answers: this study's own, and other studies'."""
        return self.done + self.reusable

    @property
    def to_run(self) -> int:
        """Trials to train (queued now or before): neither done, ended, nor to copy."""
        return self.trials - self.reused - self.ended

    def describe(self) -> str:
        """``12 trials: 6 done, 3 to copy from other studies, 3 to train``: what answers each
        trial of the YAML, and where copies come from."""
        parts = [f"{self.trials} trials: {self.done} done"]
        if self.reusable:
            sources = [
                "the study's earlier generation" if self.earlier_generation else "",
                "other studies" if self.reusable > self.earlier_generation else "",
            ]
            parts.append(f"{self.reusable} to copy from {' and '.join(filter(None, sources))}")
        if self.ended:
            parts.append(f"{self.ended} pruned or failed before")
        parts.append(f"{self.to_run} to train")
        text = ", ".join(parts)
        if self.renewed:
            text += (
                "; a categorical space changed, which Optuna cannot change within a study: its "
                "trials move to an archive study and a new generation starts"
            )
        elif self.finished_before and not self.done:
            text += (
                f"; none of the study's {self.finished_before} finished trials has this YAML's "
                "key (a field every trial depends on changed): every trial runs again"
            )
        return text


def assess(
    config: SweepConfig,
    trials: Sequence[FrozenTrial],
    keys_of: KeysOf,
    finished_elsewhere: Mapping[str, tuple[int | None, str]],
    *,
    keyless_match: bool = False,
    seeds_of: Mapping[str, Sequence[int]] | None = None,
) -> Growth:
    """Sort the trials ``config`` asks for by what answers them.

    Args:
        config: the sweep's config, as its YAML is now.
        trials: the trials its study holds (none for a new sweep).
        keys_of: each planned trial's keys (:data:`KeysOf`).
        finished_elsewhere: the keys of COMPLETE results in the storage's other studies, each
            with its seed (None where unrecorded) and its study's name.
        keyless_match: let a finished trial without a key (run by a version before keys)
            answer its configuration and seed: only when the YAML is the one it ran with.
        seeds_of: a sequential sweep's seeds per configuration (by its label,
            ``sweep_file.describe_params``; ``report.looks.needs``); a configuration it does not
            name runs the listed seeds.

    Returns:
        The :class:`Growth`; nothing is written.
    """
    elsewhere = dict(finished_elsewhere)
    growth = Growth()
    by_key: dict[str, FrozenTrial] = {}
    keyless: dict[tuple[str, Any], FrozenTrial] = {}
    pending: set[tuple[str, Any]] = set()
    waiting_placeholders = 0
    for trial in trials:
        key = trial.user_attrs.get(stored_names.TRIAL_KEY)
        chosen = trial.params or trial.system_attrs.get(stored_names.TRIAL_FIXED_PARAMS)
        if trial.state.name == "COMPLETE":
            growth.finished_before += 1
        if trial.state.name in ("WAITING", "RUNNING"):
            if chosen:
                pending.add((_text(chosen), trial.user_attrs.get(stored_names.TRIAL_SEED)))
            elif stored_names.TRIAL_SLOT in trial.user_attrs:
                waiting_placeholders += 1
        elif key is None and chosen and keyless_match:
            where = (_text(chosen), trial.user_attrs.get(stored_names.TRIAL_SEED))
            if trial.state.name == "COMPLETE" or where not in keyless:
                keyless[where] = trial
        elif key is not None and trial.state.name != "COMPLETE":
            by_key.setdefault(key, trial)
        elif key is not None:
            by_key[key] = trial  # a COMPLETE trial answers before a failed one
    fixed = plans.fixed_configurations(config)
    sampled = _sampled(config, trials, fixed)
    twins = [plans.twin_of(config, p) for p in sampled if _gets_twin(config, p)]
    configurations = _unique([*fixed, *sampled, *twins])
    # Last: a control starts from its IMP-only twin's masks, which its twin then has saved.
    configurations += plans.control_configurations(config, configurations)
    # As text, once: what each queued trial is (a repeat of a sampled one, a twin of one).
    sampled_texts = {_text(p) for p in sampled}
    twin_texts = {_text(p) for p in twins} - sampled_texts - {_text(p) for p in fixed}
    # A key covers its seed: one no keyed trial ran at is matched by none, so its trials need
    # no keys (nor the data their digest reads; a seed added to a sweep reads none).
    keyed_seeds = {t.user_attrs.get(stored_names.TRIAL_SEED) for t in by_key.values()}
    keyed_seeds |= {seed for seed, _ in elsewhere.values()}
    for params in configurations:
        label = describe_params(params)
        seeds = config.seeds if seeds_of is None else seeds_of.get(label, config.seeds)
        for seed in seeds:
            growth.trials += 1
            keyed = seed in keyed_seeds or None in keyed_seeds
            candidates = list(keys_of(params, seed)) if keyed else []
            answer = next((by_key[k] for k in candidates if k in by_key), None)
            answer = answer or keyless.get((_text(params), seed))
            if answer is not None and answer.state.name == "COMPLETE":
                growth.done += 1
            elif answer is not None:
                growth.ended += 1
            elif (_text(params), seed) in pending:
                growth.queued += 1
            else:
                source = next((elsewhere[k][1] for k in candidates if k in elsewhere), None)
                if source is not None:
                    growth.reusable += 1
                    # Its own name: a preview, before the study moves to its archive.
                    own = source == config.name or source.startswith(f"{config.name}@")
                    growth.earlier_generation += own
                growth.enqueue.append(
                    (params, _attributes(params, seed, sampled_texts, twin_texts))
                )
    slots = plans.budget(config) // len(config.seeds) - len(fixed) - len(sampled)
    growth.placeholders = max(slots - waiting_placeholders, 0)
    growth.trials += (growth.placeholders + waiting_placeholders) * len(config.seeds)
    return growth


def _sampled(
    config: SweepConfig, trials: Iterable[FrozenTrial], fixed: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The configurations the sampler chose for this study's placeholders that the YAML still
    asks for, first sampled first."""
    known = {_text(p) for p in fixed}
    found: dict[str, dict[str, Any]] = {}
    for trial in sorted(trials, key=lambda t: t.number):
        if stored_names.TRIAL_SLOT not in trial.user_attrs or not trial.params:
            continue
        text = _text(trial.params)
        if text not in known and plans.asks_for(config, trial.params):
            found.setdefault(text, dict(trial.params))
    return list(found.values())


def _gets_twin(config: SweepConfig, params: Mapping[str, Any]) -> bool:
    """Whether a sampled configuration gets its IMP-only twin enqueued beside it."""
    return config.search.enqueue_baseline and plans.is_alds(plans.rate_of(config, params))


def _attributes(
    params: Mapping[str, Any],
    seed: int,
    sampled: set[str],
    twins: set[str],
) -> dict[str, Any]:
    """A queued trial's user attributes: its seed, and what the live display and counts tell
    apart (a repeat of a sampled configuration, a twin of one or a control of that twin)."""
    attributes: dict[str, Any] = {stored_names.TRIAL_SEED: seed}
    text = _text(plans.without_control(params))  # a twin's control counts as the twin
    # The sampled trial is not known by number here: -1 marks the kind (counts.twins).
    if text in twins:
        attributes[stored_names.TRIAL_TWIN_OF] = -1
    elif text in sampled:
        attributes[stored_names.TRIAL_REPEAT_OF] = -1
    return attributes


def _unique(configurations: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    unique: dict[str, dict[str, Any]] = {}
    for params in configurations:
        unique.setdefault(_text(params), dict(params))
    return list(unique.values())


def _text(params: Mapping[str, Any]) -> str:
    return json.dumps(dict(params), sort_keys=True)


def asks_for(config: SweepConfig, trial: FrozenTrial) -> bool:
    """Whether the sweep's YAML, as it is now, asks for ``trial``: its seed is one of the
    sweep's, its configuration one it plans (:func:`plan.asks_for`), and a trial that ran has
    the key this YAML gives it (a change of ``train.lr`` leaves every earlier trial out).

    A placeholder the sampler is still to fill belongs to the sweep.
    """
    if trial.user_attrs.get(stored_names.TRIAL_SEED) not in plans.all_seeds(config):
        return False
    params = trial.params or trial.system_attrs.get(stored_names.TRIAL_FIXED_PARAMS)
    if not params:
        return stored_names.TRIAL_SLOT in trial.user_attrs
    if not plans.asks_for(config, params):
        return False
    key = trial.user_attrs.get(stored_names.TRIAL_KEY)
    digest = trial.user_attrs.get(stored_names.TRIAL_DATA_DIGEST)
    if key is None or digest is None:
        return key is None  # queued, or claimed but not yet keyed
    return key in identity.acceptable_keys(
        config,
        params,
        trial.user_attrs[stored_names.TRIAL_SEED],
        device=trial.user_attrs.get(stored_names.TRIAL_DEVICE_CLASS, "cpu"),
        data=digest,
    )


def in_sweep(config: SweepConfig, trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """The trials the sweep's YAML asks for (:func:`asks_for`), each result once: of two
    COMPLETE trials with one key (two workers that raced), the first."""
    decided = _decided(config)
    seen: set[str] = set()
    kept = []
    for trial in trials:
        if trial.state.is_finished():
            mark = (optuna_internals.trial_id(trial), trial.number, trial.datetime_start)
            belongs = decided.get(mark)
            if belongs is None:
                belongs = decided[mark] = asks_for(config, trial)
        else:
            belongs = asks_for(config, trial)
        if not belongs:
            continue
        key = trial.user_attrs.get(stored_names.TRIAL_KEY)
        if trial.state.name == "COMPLETE" and key is not None:
            if key in seen:
                continue
            seen.add(key)
        kept.append(trial)
    return kept


# Whether a finished trial belongs to a config's sweep, by config: a finished trial never
# changes, and the live display and the parent's figures ask again every few seconds, of
# every trial (a key is a hash of the whole config, 0.1 ms).
_decided: PerConfig[dict[tuple, bool]] = PerConfig(lambda config: {}, limit=8)


def provenance(trials: Iterable[FrozenTrial]) -> dict[str, set[str]]:
    """The package versions and results versions the COMPLETE ``trials`` were computed with."""
    found: dict[str, set[str]] = {
        stored_names.TRIAL_PACKAGE_VERSION: set(),
        stored_names.TRIAL_RESULTS_VERSION: set(),
    }
    for trial in trials:
        if trial.state.name != "COMPLETE":
            continue
        for name, values in found.items():
            if name in trial.user_attrs:
                values.add(str(trial.user_attrs[name]))
    return found
