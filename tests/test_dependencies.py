"""Every third-party module the shipped packages import comes from a distribution that
pyproject.toml declares in ``[project] dependencies``.

A module that works here only because something else pulled its distribution in (SciPy and
SQLAlchemy, via MLflow and Optuna) breaks an installation the day that other distribution
drops it. Every import counts, wherever it is written (at the top, under ``if TYPE_CHECKING:``,
inside a function). ``orchestrator/testing`` is shipped too (``scripts/chaos.py`` and the
benchmarks import it), so it is held to the same list: were it to import a dev-only module
(pytest), that module would have to be declared or that import left to ``tests/``.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("orchestrator", "compression", "models")


def _normalised(name: str) -> str:
    """A distribution's name as PEP 503 compares them: ``SQLAlchemy`` is ``sqlalchemy``,
    ``PyYAML`` is ``pyyaml``, ``mlflow_skinny`` is ``mlflow-skinny``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    """The distributions of ``[project] dependencies``, extras and versions aside
    (``mlflow[auth]>=3.17`` is ``mlflow``, ``psycopg[binary]`` is ``psycopg``)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = set()
    for requirement in project["dependencies"]:
        name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
        assert name, f"pyproject.toml: a dependency without a name: {requirement!r}"
        names.add(_normalised(name[1]))
    return names


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    """The top-level modules ``path`` imports, absolute imports only, with their lines."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            yield node.module.split(".")[0], node.lineno


def _third_party() -> dict[str, list[str]]:
    """Each third-party top-level module the packages import, with where (``path:line``)."""
    found: dict[str, list[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for module, line in _imports(path):
                if module in sys.stdlib_module_names or module in PACKAGES:
                    continue
                found.setdefault(module, []).append(f"{path.relative_to(ROOT)}:{line}")
    return found


def test_the_walk_finds_the_packages_imports() -> None:
    found = _third_party()
    # What the project is built on: a walk that found none of them looked in the wrong place.
    assert {"torch", "optuna", "mlflow", "pandas"} <= set(found), sorted(found)
    assert "os" not in found and "orchestrator" not in found


def test_every_imported_distribution_is_declared() -> None:
    declared = _declared()
    providers = importlib.metadata.packages_distributions()
    problems = []
    for module, places in sorted(_third_party().items()):
        where = ", ".join(places[:3]) + (f" and {len(places) - 3} more" if len(places) > 3 else "")
        distributions = providers.get(module)
        if not distributions:
            problems.append(f"{module} (imported at {where}): no installed distribution has it")
            continue
        # A module several distributions provide (mlflow: mlflow, mlflow-skinny, mlflow-tracing)
        # needs one of them declared.
        if not {_normalised(d) for d in distributions} & declared:
            problems.append(
                f"{module} (imported at {where}) comes from {' or '.join(sorted(distributions))}, "
                "which pyproject.toml's [project] dependencies does not declare"
            )
    assert not problems, "undeclared dependencies:\n" + "\n".join(problems)


def test_extras_and_odd_spellings_are_read_as_their_distribution() -> None:
    declared = _declared()
    assert {"mlflow", "psycopg", "pyyaml", "sqlalchemy", "scipy"} <= declared, sorted(declared)
    assert _normalised("SQLAlchemy") == _normalised("sqlalchemy") == "sqlalchemy"
    assert _normalised("mlflow_skinny") == "mlflow-skinny"
