"""What the fields of a sweep config share, below the schema that declares them: the error a
bad sweep raises (:class:`ConfigError`) and the wording of a validation error
(:func:`describe_errors`, naming every bad field by its YAML path), the base of every section
(:class:`Section`: frozen, unknown keys refused, no booleans where a number is meant), and a
config as dotted paths (:func:`flatten`: MLflow params, search-space paths).

The schema (:mod:`orchestrator.config`) builds on these; loading a sweep file
(:mod:`orchestrator.sweep_file`) words its own errors with them.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from orchestrator import ConfigError

__all__ = [
    "EXPANDED",
    "ConfigError",
    "NoBoolean",
    "Section",
    "describe_errors",
    "did_you_mean",
    "flatten",
    "shorten",
]


def _not_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("true/false is not a value of this field")
    return value


# The same refusal for the numbers inside a list or a mapping (``milestones: [true]``).
NoBoolean = BeforeValidator(_not_boolean)


def _takes_booleans(annotation: Any) -> bool:
    """Whether a field's type admits a boolean (``bool``, ``Any``, or a union or literal with
    one)."""
    if annotation is bool or annotation is Any:
        return True
    if get_origin(annotation) is Literal:
        return any(isinstance(choice, bool) for choice in get_args(annotation))
    return any(_takes_booleans(arg) for arg in get_args(annotation))


# A dump made with this context spells ``model`` as a section at every width (``with_params``,
# the search space's paths); without it, width 1 is the plain name, as it was before widths.
EXPANDED = {"expanded": True}


def did_you_mean(word: str, options: list[str]) -> str:
    match = difflib.get_close_matches(word, options, n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _fields_at(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the section at ``loc`` of the model ``root`` (for suggesting a key)."""
    model: type[BaseModel] | None = root
    for key in loc:
        if model is None or not isinstance(key, str) or key not in model.model_fields:
            return []
        annotation = model.model_fields[key].annotation
        model = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )
    return list(model.model_fields) if model is not None else []


def describe_errors(exc: ValidationError, source: str, root: type[BaseModel]) -> str:
    """One message naming every bad field of ``exc`` (a validation of the model ``root``,
    read from ``source``), with the nearest valid key for an unknown one."""
    lines = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        if error["type"] == "extra_forbidden" and loc:
            path = ".".join(map(str, loc))
            hint = did_you_mean(str(loc[-1]), _fields_at(root, loc[:-1]))
            lines.append(f"{path}: unknown key{hint}")
            continue
        path = ".".join(str(part) for part in loc if not _is_union_tag(part))
        message = _cut(error["msg"].removeprefix("Value error, "))
        given = error.get("input")
        shown = "" if isinstance(given, dict | list) else f" (got {_quoted(given)})"
        lines.append(f"{path}: {message}{shown}" if path else message)
    return f"{source}: invalid sweep config\n  " + "\n  ".join(dict.fromkeys(lines))


QUOTED = 80  # the most characters of a bad value an error message quotes


def shorten(text: str, limit: int | None = QUOTED) -> str:
    """``text`` cut to ``limit`` characters (None: whole), an ellipsis last where it was cut:
    how a message or a table cell quotes a value of any length."""
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def _cut(message: str) -> str:
    """``message`` with each word longer than :data:`QUOTED` characters cut (a validator may
    quote a bad value whole)."""
    return re.sub(rf"\S{{{QUOTED + 1},}}", lambda m: shorten(m.group()), message)


def _quoted(value: Any) -> str:
    """A bad value as an error message shows it: its repr, cut to :data:`QUOTED` characters."""
    return shorten(repr(value))


_TYPE_TAGS = {"float", "int", "str", "bool", "none", "function-after", "function-before"}


def _is_union_tag(part: Any) -> bool:
    # pydantic names union members in error locations ("float", "literal['final','best']");
    # users know the field by its YAML path only.
    return isinstance(part, str) and ("[" in part or part in _TYPE_TAGS)


def flatten(config: BaseModel, *, expanded: bool = False) -> dict[str, Any]:
    """The config as ``{"alds.rate": 0.5, ...}``: MLflow params and search-space paths.

    Args:
        config: the config or one of its sections.
        expanded: spell ``model`` as ``model.name`` and ``model.width`` at width 1 too (the
            search space's paths); by default width 1 is ``model``, as in every key.
    """
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        else:
            out[prefix] = value

    walk("", config.model_dump(mode="json", context=EXPANDED if expanded else None))
    return out


class Section(BaseModel):
    """A section of the sweep config: frozen, unknown keys refused, no booleans for numbers."""

    # Infinite and NaN numbers mean nothing in a sweep (``train.epochs: .inf`` would train
    # forever): refused in every float field.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic reads true as 1 in an int field (``batch_size: true``, a batch of 1).
        if info.field_name is not None and not _takes_booleans(
            cls.model_fields[info.field_name].annotation
        ):
            return _not_boolean(value)
        return value
