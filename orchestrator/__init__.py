"""Runs and tracks ALDS + IMP compression sweeps: config, study, workers, tracking, report."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("alds-imp-orchestrator")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
