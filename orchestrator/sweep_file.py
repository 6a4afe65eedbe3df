"""A sweep YAML file → a validated :class:`~orchestrator.config.SweepConfig`, and what is read
off a loaded config.

Loading never raises anything but :class:`~orchestrator.config.ConfigError` for bad input:
:func:`load_config` reads the file (safe loader only), :func:`parse_config` validates the
document against the schema and tries every value of the search space and every enqueued
configuration, so that an error names the file and the field. Beside them: the numeric range
of every number the schema takes (:func:`numeric_ranges`, the table of docs/config.md), a
configuration's label (:func:`describe_params`) and a per-config cache (:class:`PerConfig`).

It sits above the schema (:mod:`orchestrator.config`), which knows nothing of files; the
message of an invalid document is the schema's (``config_fields.describe_errors``), which
``SweepConfig.with_params`` gives too.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from orchestrator import plan as plans
from orchestrator.config import SweepConfig
from orchestrator.config_fields import ConfigError, describe_errors, did_you_mean, flatten

__all__ = [
    "PerConfig",
    "describe_params",
    "load_config",
    "numeric_ranges",
    "parse_config",
    "warnings",
]


T = TypeVar("T")


# --------------------------------------------------------------------------- loading


def _check_space(config: SweepConfig, source: str) -> None:
    for path, space in config.search.space.items():
        if path == "seed":
            raise ConfigError(
                f"{source}: search.space.seed: seeds are set by 'seeds', not searched"
            )
        for value in space.values():
            try:
                config.with_params({path: value})
            except ConfigError as exc:
                detail = str(exc).split("\n  ", 1)[-1]
                if "is not a field" in detail:
                    detail = "is not a field of the sweep config" + did_you_mean(
                        path, list(flatten(config, expanded=True))
                    )
                else:
                    detail = f"value {value!r} is not allowed: {detail.split(': ', 1)[-1]}"
                raise ConfigError(f"{source}: search.space.{path}: {detail}") from None
    for index, entry in enumerate(config.search.enqueue):
        try:
            config.with_params(entry)
        except ConfigError as exc:
            detail = str(exc).split("\n  ", 1)[-1]
            raise ConfigError(f"{source}: search.enqueue[{index}]: {detail}") from None


def _check_reach(config: SweepConfig, source: str) -> None:
    """Refuse an objective at a sparsity no trial's schedule reaches: every trial would
    train, then fail with an undefined objective."""
    reach, rate, cycles, fraction = plans.reachable_sparsity(config)
    several = len(config.search.objective) > 1
    for index, objective in enumerate(config.search.objective):
        if isinstance(objective.at, str) or objective.at <= reach:
            continue
        field = f"search.objective[{index}].at" if several else "search.objective.at"
        remaining = (1 - objective.at) / (1 - rate)
        needed = math.ceil(math.log(remaining) / math.log(1 - fraction)) if fraction else None
        fix = f"imp.cycles: {needed}" if needed else "a prune fraction above 0"
        after = f"ALDS at rate {rate:g}, then " if rate else ""
        raise ConfigError(
            f"{source}: {field}: {objective.at:g} is past the sparsity the schedule reaches: "
            f"{reach:.4g} ({after}{cycles} IMP cycle(s) of {fraction:g}, the least-pruned "
            f"configuration); every trial would fail. Lower the target, or set {fix}"
        )


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last,
    silently: ``cycles: 3`` then ``cycles: 4`` would run 4)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen and key != "<<":
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key '{key}' given twice (first on line {seen[key]})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


# YAML 1.1 (PyYAML) reads 1e-3 and 3e-4, without a dot, as strings; written unquoted they are
# numbers to a reader, so here too (a quoted "1e-3" stays a string, and is refused).
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


@functools.lru_cache(maxsize=1)
def _numeric_paths() -> frozenset[str]:
    return frozenset(path.replace("[]", "") for path in numeric_ranges())


def _check_numbers(document: Any, source: str, path: str = "") -> None:
    """Refuse a number written as a string (``epochs: "3"``): the schema would convert it
    in one place and not in another, so it is not accepted anywhere."""
    if isinstance(document, Mapping):
        for key, value in document.items():
            _check_numbers(value, source, f"{path}.{key}" if path else str(key))
    elif isinstance(document, list):
        for value in document:
            _check_numbers(value, source, path)
    elif isinstance(document, str) and path in _numeric_paths():
        try:
            float(document)
        except ValueError:
            return  # a word the field takes besides numbers ('final'), or the schema's to refuse
        raise ConfigError(
            f"{source}: {path}: {document!r} is a string; write the number without quotes"
        )


def parse_config(document: Any, source: str = "<config>") -> SweepConfig:
    """Validate an already-parsed YAML document."""
    if not isinstance(document, Mapping):
        kind = "empty" if document is None else type(document).__name__
        raise ConfigError(f"{source}: a sweep config must be a mapping of sections, got {kind}")
    _check_numbers(document, source)
    try:
        config = SweepConfig.model_validate(dict(document))
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, source, SweepConfig)) from None
    except (TypeError, ValueError, RecursionError) as exc:
        raise ConfigError(f"{source}: invalid sweep config: {exc}") from None
    _check_space(config, source)
    _check_reach(config, source)
    return config


def load_config(path: str | Path) -> SweepConfig:
    """Read and validate a sweep YAML file (safe loader only)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        document = yaml.load(text, Loader=_StrictLoader)  # a safe loader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        kind = (
            "YAML error"
            if isinstance(exc, yaml.constructor.ConstructorError)
            else "YAML syntax error"
        )
        raise ConfigError(f"{path}: {kind} at {where}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: YAML error: {exc}") from None
    return parse_config(document, str(path))


# --------------------------------------------------------------------------- read off a config


def numeric_ranges(model: type[BaseModel] = SweepConfig) -> dict[str, str]:
    """Every number the schema takes, with its range as text: ``{"train.lr": "(0, 10]"}`` (an
    item of a list or mapping as ``train.milestones[]``; ``∞`` where a side is open). The
    table of docs/config.md "Ranges", held equal to this by a test.

    Args:
        model: the schema, or one of its sections.
    """
    out: dict[str, str] = {}

    def interval(constraints: list[Any]) -> str:
        low, high = "(-∞", "∞)"
        for constraint in constraints:
            for name, text in (("ge", "[{}"), ("gt", "({}")):
                if getattr(constraint, name, None) is not None:
                    low = text.format(getattr(constraint, name))
            for name, text in (("le", "{}]"), ("lt", "{})")):
                if getattr(constraint, name, None) is not None:
                    high = text.format(getattr(constraint, name))
        return f"{low}, {high}".replace(".0,", ",").replace(".0)", ")").replace(".0]", "]")

    def walk(path: str, annotation: Any, constraints: list[Any]) -> None:
        origin = get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for name, field in annotation.model_fields.items():
                walk(f"{path}.{name}" if path else name, field.annotation, field.metadata)
        elif origin is Annotated:
            base, *extra = get_args(annotation)
            held = [c for e in extra for c in getattr(e, "metadata", [e])]
            walk(path, base, constraints + held)
        elif annotation in (int, float):
            out[path] = interval(constraints)
        elif origin in (tuple, dict):
            walk(f"{path}[]", get_args(annotation)[0 if origin is tuple else 1], [])
        elif origin is not Literal:
            for arg in get_args(annotation):  # a union: each member
                walk(path, arg, constraints)

    walk("", model, [])
    return out


def describe_params(params: Mapping[str, Any]) -> str:
    """A short, stable text of a configuration's parameters: its label in progress lines, the
    report and MLflow (``alds.rate=0.3,imp.prune_fraction=0.2``)."""
    return json.dumps(dict(params), sort_keys=True, separators=(",", "="))[1:-1].replace('"', "")


class PerConfig(Generic[T]):
    """A value made once for each config object a process holds (configs are frozen, so the
    object stands for its contents): what a process derives from its sweep's config and asks
    for again and again, trial by trial. Keeps the last ``limit`` configs' values.

    Args:
        make: the value of a config.
        limit: how many configs' values are kept (a process holds a few).
    """

    def __init__(self, make: Callable[[SweepConfig], T], limit: int = 32) -> None:
        self.make = make
        self.limit = limit
        self.held: dict[int, tuple[SweepConfig, T]] = {}

    def __call__(self, config: SweepConfig) -> T:
        held = self.held.get(id(config))
        if held is None or held[0] is not config:
            if len(self.held) >= self.limit:
                self.held.clear()
            held = self.held[id(config)] = (config, self.make(config))
        return held[1]


def warnings(config: SweepConfig) -> list[str]:
    """Choices the schema allows that a reader of the results must know about."""
    found = []
    modes = config.search.space.get("alds.mode")
    factorized = config.alds.mode == "factorize" or "factorize" in (
        () if modes is None or modes.choices is None else modes.choices
    )
    if factorized and config.imp.factorized_rewind == "theta0":
        found.append(
            "imp.factorized_rewind: theta0 rewinds factorized networks to θ0 factorized by "
            "the trained plan: its factors are other coordinates than the trained ones, so "
            "the masks IMP computes on the trained factors land on unrelated entries "
            "(docs/imp.md). Prefer alds or compressed"
        )
    search = config.search
    size = plans.space_size(config)
    per_seed = plans.budget(config) // len(config.seeds)
    if search.sampler != "grid" and size is not None and per_seed > size:
        found.append(
            f"search: the space holds {size} configuration(s) but the {search.sampler} sampler "
            f"is given {per_seed} per seed ({plans.budget(config)} trials): it will draw some "
            f"again. Use sampler: grid (each once), or n_trials: {size * len(config.seeds)}"
        )
    return found
