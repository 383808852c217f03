"""No import cycles among bastion's modules.

A cycle makes import order matter (a name is missing from a half-initialised module,
depending on which module a process happens to import first) and ties layers together
that should not know each other. Only module-level imports count: imports under
``if TYPE_CHECKING:`` never run, and one inside a function runs after every module is
loaded. Importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` first, so those
packages count as imported too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import bastion

SRC = Path(bastion.__file__).resolve().parent


def modules(root: Path) -> dict[str, Path]:
    """Every module of the package at ``root`` by dotted name (a package by its own name)."""
    out: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_names(body: list[ast.stmt], package: str) -> Iterator[str]:
    """Dotted names imported by the statements that run when the module is imported."""
    for node in body:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)  # may be submodules
        elif isinstance(node, ast.If) and _type_checking(node):
            yield from _imported_names(node.orelse, package)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        else:
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, field, None)
                if isinstance(inner, list):
                    yield from _imported_names([n for n in inner if isinstance(n, ast.stmt)], package)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports at module level (with their packages)."""
    known = modules(root)
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        # A module's own packages are initialised (or being initialised) before it runs.
        own = {name.rsplit(".", k)[0] for k in range(name.count(".") + 1)}
        targets: set[str] = set()
        for imported in _imported_names(ast.parse(path.read_text(encoding="utf-8")).body, package):
            parts = imported.split(".")
            targets.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        graph[name] = {t for t in targets if t in known} - own
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def describe(graph: dict[str, set[str]], component: list[str]) -> str:
    members = set(component)
    edges = [f"{a} -> {b}" for a in component for b in sorted(graph[a] & members)]
    return "; ".join(edges)


def test_bastion_has_no_import_cycles() -> None:
    """No set of bastion's modules imports itself round at module level (the cycles that
    were here: pipeline.registry <-> stages through bastion.config, cli.app <-> cli.run and
    cli.tester, detection config -> modsec -> engine -> config)."""
    graph = import_graph(SRC)
    assert graph.get("bastion.pipeline.registry")  # the walk sees imports
    assert [describe(graph, c) for c in cycles(graph)] == []


def test_the_check_finds_cycles_through_packages_and_ignores_type_checking(tmp_path: Path) -> None:
    """The check itself: a cycle through a package's ``__init__`` is found; an import under
    TYPE_CHECKING or inside a function is not one."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub.b import B\n")
    (pkg / "sub" / "b.py").write_text("from pkg.a import A\nB = 1\n")
    (pkg / "a.py").write_text("from pkg.sub.c import C\nA = 1\n")  # runs pkg/sub/__init__ first
    (pkg / "sub" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import d\nC = 1\n"
    )
    (pkg / "d.py").write_text("def f():\n    from pkg.sub import c\n")
    (pkg / "e.py").write_text("from . import a\n")
    graph = import_graph(pkg)
    assert cycles(graph) == [["pkg.a", "pkg.sub", "pkg.sub.b"]]
    assert graph["pkg.sub.c"] == set() and graph["pkg.d"] == set()
    assert graph["pkg.e"] == {"pkg.a"}
