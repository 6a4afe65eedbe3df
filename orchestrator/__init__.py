"""Runs and tracks ALDS + IMP compression sweeps: config, study, workers, tracking, report."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    # Reading the installed version costs a tenth of a second: only when asked for.
    if name != "__version__":
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("alds-imp-orchestrator")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0.0.0+unknown"
