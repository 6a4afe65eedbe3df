"""A trial's spec: what one trial is, made once from its stored parameters and seed.

A trial is stored by Optuna as raw parameters (``{"alds.rate": 0.3, ...}``, and
:data:`plan.CONTROL` for a lottery-ticket control) and a seed attribute. Everything else about
it (its configuration, its ALDS rate, its arm, its IMP-only twin, its key, the file its
progress is kept in) follows from those by the rules of :mod:`orchestrator.plan` and
:mod:`orchestrator.trial.identity`. :class:`TrialSpec` applies them once, where a trial is
claimed or enqueued, and every later hop (the worker, tracking, the twins' links, the pruner,
the masks of the controls) reads the answer from it; a stored trial is read back as one
(:meth:`TrialSpec.of_trial`: the twins' links, the pruner). The one twin lookup is
:func:`twin_configuration`; :mod:`orchestrator.study.growth` plans configurations, not trials,
on :mod:`orchestrator.plan`'s rules directly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from orchestrator import plan, stored_names
from orchestrator.config import SweepConfig
from orchestrator.trial import identity

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

__all__ = ["TrialSpec", "twin_configuration"]


@dataclass(frozen=True, eq=False)
class TrialSpec:
    """One trial of a sweep: its parameters as stored and its seed, and what follows from them.

    Args:
        sweep: the sweep's config.
        params: the trial's searched parameters by dotted path, as stored (a control's name
            :data:`plan.CONTROL` too).
        seed: the trial's seed.
    """

    sweep: SweepConfig
    params: Mapping[str, Any]
    seed: int

    @classmethod
    def of_trial(cls, sweep: SweepConfig, trial: FrozenTrial) -> TrialSpec | None:
        """The spec of a stored trial; None for one without a seed (not one of a sweep's).
        Only a claimed trial has its parameters: a placeholder the sampler is still to fill
        has none yet (an IMP-only configuration of a sweep that searches nothing has none
        either, and is a trial all the same)."""
        seed = trial.user_attrs.get(stored_names.TRIAL_SEED)
        if seed is None:
            return None
        return cls(sweep, dict(trial.params), int(seed))

    # ----------------------------------------------------------------------- what it is

    @cached_property
    def control(self) -> str | None:
        """The lottery-ticket control this trial runs (``random_mask``, ``reinit``), or None."""
        return plan.control_of(self.params)

    @cached_property
    def configuration(self) -> dict[str, Any]:
        """The searched parameters of its configuration: a control's are its twin's."""
        return plan.without_control(self.params)

    @cached_property
    def config(self) -> SweepConfig:
        """The trial's config: the sweep's, with its configuration's parameters applied."""
        return self.sweep.with_params(self.configuration)

    @cached_property
    def rate(self) -> float:
        """Its ALDS rate (0 for IMP only and for a control)."""
        return plan.rate_of(self.sweep, self.configuration)

    @property
    def is_alds(self) -> bool:
        """Whether it runs ALDS before IMP."""
        return bool(plan.is_alds(self.rate))

    @property
    def is_control(self) -> bool:
        return self.control is not None

    @property
    def is_paired(self) -> bool:
        """Whether it is compared with an IMP-only twin: an ALDS trial, or a control."""
        return self.is_alds or self.is_control

    @property
    def arm(self) -> str:
        """The stored arm (``stored_names.ARM_*``)."""
        return plan.arm(self.rate, self.control)

    @property
    def label(self) -> str:
        """The arm as people read it: ``ALDS 0.3``, ``IMP only``, ``control reinit``."""
        return plan.arm_label(self.rate, self.control)

    @property
    def prunable(self) -> bool:
        """Whether the study's pruner may stop it (:func:`plan.prunable`)."""
        return plan.prunable(self.sweep, self.rate)

    # ----------------------------------------------------------------------- its twin

    @cached_property
    def twin(self) -> TrialSpec | None:
        """Its IMP-only twin, at the same seed: for an ALDS trial the configuration
        :func:`plan.twin_of` gives, for a control the IMP-only trial it controls; None for an
        IMP-only trial (it is the twin)."""
        if not self.is_paired:
            return None
        return TrialSpec(self.sweep, twin_configuration(self.sweep, self.params), self.seed)

    @cached_property
    def pairing(self) -> tuple[int, str]:
        """What it shares with its twin, and its twin with it: the seed and the twin's
        parameters. Trials with one pairing are a baseline and the trials paired with it."""
        return self.seed, json.dumps(twin_configuration(self.sweep, self.params), sort_keys=True)

    @property
    def masks_owner(self) -> TrialSpec | None:
        """The IMP-only trial whose masks per cycle this one saves (itself) or starts from (a
        control's twin), in a sweep with controls; None where no masks are kept."""
        if self.is_alds or not self.sweep.imp.controls:
            return None
        return self.twin if self.is_control else self

    # ----------------------------------------------------------------------- its identity

    def key(self, *, device: str, data: str) -> str:
        """Its result's key (:func:`identity.trial_key`) on ``device`` with data digest
        ``data``."""
        return identity.trial_key(
            self.sweep, self.params, self.seed, device=identity.device_class(device), data=data
        )

    def acceptable_keys(self, *, device: str, data: str) -> list[str]:
        """The keys whose results stand for its own (:func:`identity.acceptable_keys`)."""
        return identity.acceptable_keys(
            self.sweep, self.params, self.seed, device=identity.device_class(device), data=data
        )

    @property
    def progress_name(self) -> str:
        """The name its progress file is kept under (:func:`identity.progress_name`)."""
        return identity.progress_name(self.config, self.control)


def twin_configuration(sweep: SweepConfig, params: Mapping[str, Any]) -> dict[str, Any]:
    """The searched parameters of the IMP-only twin of the trial at ``params``: for an ALDS
    configuration :func:`plan.twin_of`, for a control its own configuration, for an IMP-only
    one itself.

    The one twin lookup: :class:`TrialSpec` (its ``twin`` and ``pairing``) and the report's
    pairing of configurations (which have no seed) both read it.
    """
    configuration = plan.without_control(params)
    if plan.control_of(params) is None and plan.is_alds(plan.rate_of(sweep, configuration)):
        return plan.twin_of(sweep, configuration)
    return configuration
