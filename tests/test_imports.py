"""The import structure: no circle, the three layers point one way, and the orchestrator's
modules import only modules below them in docs/ARCHITECTURE.md's tables (bottom first: the
root's rows, modules and packages, and each package's own table).

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
            # `from orchestrator import plan` names a module; `from x import Name`, its module.
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


def _table(section: str) -> list[str]:
    """The rows of the table under heading ``### `section` `` of docs/ARCHITECTURE.md, bottom
    first: each a module (``plan.py``) or a package (``report/``)."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    body = text.split(f"### `{section}`", 1)[1].split("\n### ", 1)[0]
    return re.findall(r"^\| `([a-z_]+(?:\.py|/))` \|", body, flags=re.MULTILINE)


def _place(module: str) -> tuple[str, str] | None:
    """Where an orchestrator module sits: its row at the root (``report/`` or ``plan.py``) and
    its row inside its package (``figures.py``; ``__init__.py`` for a package's face)."""
    parts = module.split(".")[1:]
    if not parts:
        return None  # the root's face, orchestrator/__init__.py
    if len(parts) == 1:
        path = ROOT / "orchestrator" / parts[0]
        return (f"{parts[0]}/", "__init__.py") if path.is_dir() else (f"{parts[0]}.py", "")
    return f"{parts[0]}/", f"{parts[1]}.py"


def _backward(graph: dict[str, set[str]]) -> list[str]:
    """Every import of an orchestrator module that does not point to a row below it: at the
    root across rows, and inside a package across its own table (its face sits on top)."""
    root = _table("orchestrator/")
    found = []
    for name, targets in sorted(graph.items()):
        here = _place(name) if name.startswith("orchestrator.") else None
        if here is None or here[0] not in root:
            continue  # __main__ (runs the CLI) and the other layers
        for target in sorted(targets):
            there = _place(target) if target.startswith("orchestrator.") else None
            if there is None:
                continue
            if there[0] != here[0]:
                ok = there[0] in root and root.index(there[0]) < root.index(here[0])
            else:
                rows = [*_table(f"orchestrator/{here[0]}"), "__init__.py"]
                ok = (
                    there[1] in rows
                    and here[1] in rows
                    and (rows.index(there[1]) < rows.index(here[1]))
                )
            if not ok:
                found.append(f"{name} imports {target}")
    return found


def test_every_module_has_its_row() -> None:
    root = _table("orchestrator/")
    missing = []
    for name in _graph():
        place = _place(name) if name.startswith("orchestrator.") else None
        if place is None or place[0] == "__main__.py":
            continue
        if place[0] not in root:
            missing.append(place[0])
        elif place[1] not in ("", "__init__.py") and place[1] not in _table(
            f"orchestrator/{place[0]}"
        ):
            missing.append(f"{place[0]}{place[1]}")
    assert not missing, f"not in docs/ARCHITECTURE.md's tables: {sorted(set(missing))}"


def test_orchestrator_modules_import_only_modules_below_them_in_the_tables() -> None:
    backward = _backward(_graph())
    assert not backward, "imports running back up docs/ARCHITECTURE.md's tables:\n" + "\n".join(
        backward
    )


def test_the_root_holds_few_modules_each_short_with_a_docstring() -> None:
    root = sorted(p.name for p in (ROOT / "orchestrator").glob("*.py"))
    assert len(root) <= 12, root
    for path in (ROOT / "orchestrator").rglob("*.py"):
        text = path.read_text()
        assert ast.get_docstring(ast.parse(text)), f"{path.relative_to(ROOT)}: no docstring"
        # One concept a module: past 650 lines a module holds several (split it by kind).
        assert text.count("\n") <= 650, f"{path.relative_to(ROOT)}: over 650 lines"


def test_each_face_exports_what_its_modules_hold() -> None:
    # A face re-exports only (its TYPE_CHECKING imports for type checkers, the same names
    # imported on first use at run time): every name resolves to its module's own object.
    import importlib

    for package in ("trial", "study", "tracking", "execution"):
        face = importlib.import_module(f"orchestrator.{package}")
        exports = face._EXPORTS
        assert sorted(face.__all__) == sorted(exports), package
        declared = {
            alias.asname or alias.name: node.module
            for node in ast.walk(
                ast.parse((ROOT / "orchestrator" / package / "__init__.py").read_text())
            )
            if isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith(f"orchestrator.{package}.")
            for alias in node.names
        }
        assert declared == {n: f"orchestrator.{package}.{m}" for n, m in exports.items()}, package
        for name, module in exports.items():
            held = getattr(importlib.import_module(f"orchestrator.{package}.{module}"), name)
            assert getattr(face, name) is held, f"orchestrator.{package}.{name}"
        # A name it does not export is an AttributeError, as on any module.
        assert not hasattr(face, "no_such_name"), package
