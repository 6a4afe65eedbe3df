"""``orchestrate report``: tables and plots from a sweep's study and its MLflow curves.

The seed's question is whether ALDS before IMP gives a better network than IMP alone at the
same sparsity, and at which ALDS rate. :func:`build` reads the stores (``sources``) or
:func:`rebuild` an earlier report's export (``exported``), computes every table of the
registry ``tables.TABLES`` and draws every figure of ``figures.FIGURES`` (``assemble``);
:func:`write` renders them (``render``), :func:`publish` also logs them. The names they share
are in ``schema``. The face imports nothing until a name is used: ``validate`` reads the seed
planner (``notes``, ``statistics``) without the study or MLflow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator import lazy_face

if TYPE_CHECKING:
    from orchestrator.report.assemble import (
        build as build,
        draw as draw,
        publish as publish,
        rebuild as rebuild,
    )
    from orchestrator.report.options import (
        FORMATS as FORMATS,
        parse_formats as parse_formats,
        parse_levels as parse_levels,
    )
    from orchestrator.report.render import present as present, write as write
    from orchestrator.report.schema import (
        LEVELS as LEVELS,
        METRICS as METRICS,
        TOLERANCE as TOLERANCE,
        Report as Report,
    )
    from orchestrator.report.sources import Curves as Curves

# Each name and its module, imported on first use (orchestrator.lazy_face); the imports above
# name them for type checkers.
_EXPORTS = {
    "build": "assemble",
    "draw": "assemble",
    "parse_formats": "options",
    "parse_levels": "options",
    "publish": "assemble",
    "rebuild": "assemble",
    "present": "render",
    "write": "render",
    "FORMATS": "options",
    "LEVELS": "schema",
    "METRICS": "schema",
    "TOLERANCE": "schema",
    "Report": "schema",
    "Curves": "sources",
}

__all__ = list(_EXPORTS)

if not TYPE_CHECKING:
    __getattr__ = lazy_face(__name__, _EXPORTS)
