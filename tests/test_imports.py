"""The package's import graph: no circles, and library code never imports a command."""

from __future__ import annotations

import ast
from pathlib import Path

import progan_lightning

PACKAGE = Path(progan_lightning.__file__).parent
NAME = "progan_lightning"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> set[str]:
    """The package's modules ``path`` imports anywhere in it (function-level imports too);
    ``from a import b`` counts ``a.b`` when that is a module, else ``a``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
    return {name for name in found if name in known}


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports(path, known) - {name} for name, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_of_the_package_imports_a_module_that_imports_it_back():
    graph = import_graph()
    assert len(graph) > 50  # the walk sees the whole package
    assert cycles(graph) == []


def test_library_code_never_imports_a_command():
    """Only ``cli/`` and the ``python -m`` entry modules may import ``progan_lightning.cli``
    (besides its config finder, which every command and composing caller needs)."""
    allowed = {f"{NAME}.cli.config"}
    offenders = {
        name: sorted(i for i in deps if i.startswith(f"{NAME}.cli") and i not in allowed)
        for name, deps in import_graph().items()
        if not name.startswith(f"{NAME}.cli") and not name.endswith("__main__")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_package_never_imports_the_studies():
    """``benchmarks/`` (a checkout's studies, not installed) may import the package, never the
    other way round."""
    offenders = {
        name: sorted(found)
        for name, path in modules().items()
        if (found := {i for i in imported_names(path) if i.split(".")[0] == "benchmarks"})
    }
    assert offenders == {}


def imported_names(path: Path) -> set[str]:
    """Every module name ``path`` imports (absolute imports, function-level ones too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found
