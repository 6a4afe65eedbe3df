"""The import structure: no circle, the three layers point one way, and the orchestrator's
modules import only modules above them in docs/ARCHITECTURE.md's table.

Every import counts, wherever it is written: at the top of a module, under
``if TYPE_CHECKING:`` and inside functions (the CLI and the launchers import heavy modules
late, which must not hide a circle).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("models", "compression", "orchestrator")


def _modules() -> dict[str, Path]:
    """Every module of the three packages by dotted name (a package by its ``__init__``)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(path: Path, name: str, modules: dict[str, Path]) -> Iterator[str]:
    """The project modules that ``path`` (module ``name``) imports, anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from orchestrator import keys` names a module; `from x import Name`, its module.
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: set(_imports(path, name, modules)) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph``, as the modules along it, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle() -> None:
    graph = _graph()
    assert len(graph) > 40  # the walk found the project
    assert _cycle(graph) is None, " → ".join(_cycle(graph) or [])


def test_a_circle_is_found() -> None:
    # The walk itself: a circle of three is reported along its path.
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_layers_point_one_way() -> None:
    graph = _graph()
    for name, targets in graph.items():
        layer = name.split(".")[0]
        below = PACKAGES[: PACKAGES.index(layer) + 1]
        wrong = sorted(t for t in targets if t.split(".")[0] not in below)
        assert not wrong, f"{name} imports {wrong}: {layer} may import only {below}"


def _table_order() -> list[str]:
    """The orchestrator's modules in the order of docs/ARCHITECTURE.md's table, bottom first."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    section = text.split("### `orchestrator/`", 1)[1].split("\n### ", 1)[0]
    return re.findall(r"^\| `([a-z_]+(?:\.py|/))` \|", section, flags=re.MULTILINE)


def _row(module: str, rows: list[str]) -> str | None:
    """The table row of an orchestrator module: its package's row (``report/``), or its own."""
    parts = module.split(".")
    if len(parts) == 1:
        return None  # the package's face: orchestrator/__init__.py
    if f"{parts[1]}/" in rows:
        return f"{parts[1]}/"
    return f"{parts[1]}.py"


def test_orchestrator_modules_import_only_modules_above_them_in_the_table() -> None:
    rows = _table_order()
    graph = _graph()
    listed = {_row(m, rows) for m in graph if m.startswith("orchestrator.")} - {None}
    assert listed - {"__main__.py"} <= set(rows), f"not in the table: {listed - set(rows)}"
    for name, targets in graph.items():
        row = _row(name, rows)
        if not name.startswith("orchestrator.") or row not in rows:
            continue  # __main__ (runs the CLI) and the other layers
        for target in targets:
            other = _row(target, rows)
            if not target.startswith("orchestrator.") or other == row or other is None:
                continue
            assert rows.index(other) < rows.index(row), (
                f"{name} imports {target}, which is not above {row} in docs/ARCHITECTURE.md"
            )
