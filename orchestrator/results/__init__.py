"""A sweep's results from Python: ``orchestrator.open(...)`` in a notebook, and the one way
every read command finds a study (``open_study``).

- :mod:`~orchestrator.results.studies`: a study named by its sweep file, or by its name and
  storage, with the config it holds;
- :mod:`~orchestrator.results.sweep_results`: :func:`open` and :class:`SweepResults`, the
  report's tables and figures as pandas DataFrames and matplotlib figures, read with the same
  bulk readers as ``orchestrate report`` and nothing written.

The face imports nothing until a name is used (``orchestrator.lazy_face``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator import lazy_face

if TYPE_CHECKING:
    from orchestrator.results.studies import open_study as open_study
    from orchestrator.results.sweep_results import SweepResults as SweepResults, open as open

_EXPORTS = {
    "open_study": "studies",
    "SweepResults": "sweep_results",
    "open": "sweep_results",
}
__all__ = list(_EXPORTS)

if not TYPE_CHECKING:  # type checkers read the imports above, and no name besides them
    __getattr__ = lazy_face(__name__, _EXPORTS)
