"""Every hash the tool names things by: the sweep's and its study's, a trial's result key, the
cached checkpoints' keys and a trial's progress file, all one canonical-JSON-then-SHA-256 rule
(:func:`content_hash`). A changed value orphans a study, a cache or a reused result, so each
is pinned for the published sweeps by a test (tests/test_identity.py).

**A trial's key** is one hash for everything that determines its result. Two trials with one
key compute the same curve, so a result is computed once and any sweep in the same study
storage reuses it (:mod:`orchestrator.study.reuse`), as the dense checkpoint
``dense-<hash>.pt`` is trained once and shared one level down. The key hashes:

- the results version (:data:`RESULTS_VERSION`), bumped whenever the numerics of training,
  ALDS or IMP change, so results of older code are not reused unless a sweep opts in
  (``execution.reuse: any_version``);
- the seed;
- the device class (``cpu`` or ``cuda``): mixed precision and cuDNN make the two differ;
- the data: the digest of every image and label of the training, validation and test splits
  as the trial sees them (subsets and hold-out included);
- every config field that acts on the trial, as resolved for it (its searched parameters
  applied): ``model``, ``dataset`` (not ``root`` or ``download``, which only say where the
  files are; ``synthetic`` only for the synthetic dataset), ``train`` (``amp`` and
  ``channels_last`` only on CUDA, where they act), ``alds`` (of an IMP-only trial only
  ``rate`` and ``finetune_epochs``: the rest means nothing without ALDS) and ``imp``
  (``factorized_rewind`` only for a factorized ALDS trial; ``epochs_per_cycle`` left unset
  is ``train.epochs``);
- for a control trial, its control (``imp.control`` in its parameters): an IMP-only trial's
  key is the same whether or not its sweep runs controls.

Never in it: the sweep's name, its seeds list, ``search``, ``execution``, ``tracking``,
``report`` and ``imp.controls`` (how many workers, where, which storage, how the report
judges, which controls run beside), so the IMP-only twin of every sweep at one schedule and
seed is one key. A new config field must default to
what the code did before it, or every existing key changes (a test freezes a key).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from orchestrator import plan
from orchestrator.config import SweepConfig, flatten
from orchestrator.sweep_file import PerConfig

RESULTS_VERSION = 1
KEY_LENGTH = 16
CHECKPOINT_KEY_LENGTH = 20

__all__ = [
    "CHECKPOINT_KEY_LENGTH",
    "KEY_LENGTH",
    "RESULTS_VERSION",
    "acceptable_keys",
    "checkpoint_key",
    "config_hash",
    "content_hash",
    "dense_key",
    "device_class",
    "experiment_hash",
    "init_key",
    "key_document",
    "package_version",
    "progress_name",
    "trial_key",
]

_NEVER = (
    "name",
    "seeds",
    "search.",
    "execution.",
    "tracking.",
    "report.",
    "sequential",  # which seeds run, not what one computes
    "imp.controls",  # which controls the sweep adds; a control trial's own is in its params
    "dataset.root",
    "dataset.download",
)
_ALDS_ONLY = ("alds.mode", "alds.error", "alds.k_candidates")
_CUDA_ONLY = ("train.amp", "train.channels_last")


def device_class(device: str) -> str:
    """``cuda`` for any CUDA device (``cuda``, ``cuda:1``), else the device's type (``cpu``)."""
    return str(device).split(":", 1)[0]


def key_document(
    config: SweepConfig,
    params: Mapping[str, Any],
    seed: int,
    *,
    device: str,
    data: str,
    version: int = RESULTS_VERSION,
) -> dict[str, Any]:
    """What :func:`trial_key` hashes, readable (``orchestrate`` shows it nowhere; tests do).

    Args:
        config: the sweep's config.
        params: the trial's searched parameters by dotted path.
        seed: the trial's seed.
        device: its device class (:func:`device_class`).
        data: its data's digest (``orchestrator.data.digest``).
        version: the results version the key is for.
    """
    flat = dict(_flat(config))
    for path, value in params.items():
        flat[path] = _like(flat.get(path), value)
    if flat.get("imp.epochs_per_cycle") is None and flat.get("train.epochs") is not None:
        flat["imp.epochs_per_cycle"] = flat["train.epochs"]
    acting = {path: value for path, value in flat.items() if _acts(path, flat, device)}
    return {
        "results_version": version,
        "seed": int(seed),
        "device": device,
        "data": data,
        "config": acting,
    }


def trial_key(
    config: SweepConfig,
    params: Mapping[str, Any],
    seed: int,
    *,
    device: str,
    data: str,
    version: int = RESULTS_VERSION,
) -> str:
    """The key of the trial of ``config`` at ``params`` and ``seed`` (see the module's text)."""
    document = key_document(config, params, seed, device=device, data=data, version=version)
    return content_hash(document, length=KEY_LENGTH)


def _acts(path: str, flat: Mapping[str, Any], device: str) -> bool:
    if path.startswith(_NEVER):
        return False
    if path.startswith("dataset.synthetic."):
        return flat["dataset.name"] == "synthetic"
    alds = bool(plan.is_alds(float(flat["alds.rate"])))
    if path in _ALDS_ONLY:
        return alds
    if path == "imp.factorized_rewind":
        return alds and flat["alds.mode"] == "factorize"
    if path in _CUDA_ONLY:
        return device == "cuda"
    return True


def _like(default: Any, value: Any) -> Any:
    """``value`` as the field holds it: a searched ``0`` of a float field is ``0.0``, as the
    config's validation makes it, so both spell one key."""
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, tuple):
        return list(value)
    return value


# A config's flat document: the report and the progress display key every trial of a sweep
# against one config.
_flat = PerConfig(flatten)


def package_version() -> str:
    """The installed version of this package, recorded with every result."""
    import orchestrator

    return str(orchestrator.__version__)


def acceptable_keys(
    config: SweepConfig, params: Mapping[str, Any], seed: int, *, device: str, data: str
) -> list[str]:
    """The keys whose results stand for the trial at ``params`` and ``seed``: its own (this
    results version), and with ``execution.reuse: any_version`` those of every earlier one."""
    newest = RESULTS_VERSION
    versions = range(newest, 0, -1) if config.execution.reuse == "any_version" else [newest]
    return [
        trial_key(config, params, seed, device=device, data=data, version=version)
        for version in versions
    ]


def content_hash(document: Any, *, length: int = 12) -> str:
    """A stable hash of a JSON-serialisable document (keys sorted, compact separators).

    Values JSON cannot hold are hashed by their ``str``.
    """
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]


def config_hash(config: BaseModel, *, length: int = 12) -> str:
    """A stable content hash of a config (or of one section)."""
    return content_hash(config.model_dump(mode="json"), length=length)


# How many workers run where: a resumed sweep may change them without changing its results.
_LAUNCH_FIELDS = ("launcher", "slurm", "devices", "workers_per_device", "reuse")


def experiment_hash(config: SweepConfig) -> str:
    """The hash that identifies a sweep's study: :func:`config_hash` without the launch
    fields of ``execution`` (launcher, slurm, devices, workers_per_device, reuse) and without
    ``report``, which judges the results without changing them, and ``sequential``, which
    chooses which trials run, not what one computes."""
    document = config.model_dump(mode="json")
    for field in _LAUNCH_FIELDS:
        document["execution"].pop(field)
    document.pop("report", None)
    document.pop("sequential", None)
    return content_hash(document)


# --------------------------------------------------------------------------- files


def progress_name(trial_config: SweepConfig, control: str | None) -> str:
    """The name a trial's progress file is kept under (``workspace.progress_file``): its
    config's hash, and its control's name for a control (which runs its twin's config)."""
    return config_hash(trial_config) + (f"-{control}" if control else "")


def init_key(
    config: SweepConfig, *, classes: int, channels: int, size: Any, seed: int
) -> dict[str, Any]:
    """What names a cached θ0: the network (name and width) for a dataset's classes, channels
    and image size, at ``seed``. Every trial of every sweep with these shares it."""
    return {
        # The plain name at width 1: the keys of checkpoints cached before widths existed.
        "model": config.model.model_dump(mode="json"),
        "classes": classes,
        "channels": channels,
        "size": size,
        "seed": seed,
    }


def dense_key(config: SweepConfig, init: dict[str, Any]) -> dict[str, Any]:
    """What names a cached dense-trained network: its θ0 (:func:`init_key`), the data and
    training it had, and the iteration of an early rewind point it keeps (``imp.rewind:
    early:N``)."""
    return {
        "init": init,
        "dataset": config.dataset.model_dump(mode="json"),
        "train": config.train.model_dump(mode="json"),
        "early": config.imp.early_iteration,
    }


def checkpoint_key(description: Mapping[str, Any]) -> str:
    """A cached checkpoint's key, of its description (:func:`init_key`, :func:`dense_key`)."""
    return content_hash(description, length=CHECKPOINT_KEY_LENGTH)
