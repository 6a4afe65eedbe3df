"""Runs and tracks ALDS + IMP compression sweeps: config, study, workers, tracking, report."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # orchestrator.results.open, typed there (named here without importing it: the results
    # sit on top of every package, and the root's face below them).
    open: Callable[..., Any]
    __version__: str

__all__ = ["ConfigError", "lazy_face", "open"]


class ConfigError(ValueError):
    """A sweep configuration that cannot be used; the message names the file and field.

    Here, at the package's root, so that what raises or catches it (the launchers the CLI's
    ``--help`` lists) need not import the config's schema (pydantic) to do so.
    """


def lazy_face(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """The ``__getattr__`` of a concept package's face: each exported name (name → the module
    of ``package`` that holds it) is imported on first use. Importing any module of a package
    runs its face first, and ``orchestrate --help`` and ``validate`` must not pay for torch,
    Optuna or MLflow."""

    def attribute(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return attribute


def _attribute(name: str) -> Any:
    # ``orchestrator.open`` (a sweep's results in a notebook) and the installed version are
    # imported or read only when asked for: ``import orchestrator`` stays light.
    if name == "open":  # as a package face re-exports (lazy_face): the results sit on top
        return importlib.import_module("orchestrator.results").open
    if name != "__version__":
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("alds-imp-orchestrator")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0.0.0+unknown"


if not TYPE_CHECKING:  # type checkers read the names above, and no name besides them
    __getattr__ = _attribute
