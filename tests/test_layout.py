"""The shape of the house: ``pipeline/`` imports form no cycle.

The graph is built from the source with ``ast``: every import, at module level or inside a function
(a lazy import still ties two modules together), except those under ``if TYPE_CHECKING:`` (never
run).  ``from .x import y`` is an edge to ``pipeline.x.y`` when that is a module, else to
``pipeline.x``.  A package's own ``__init__`` importing its submodules is the normal shape of a
package, not a cycle, so importing ``pipeline.a.b`` adds no edge to ``pipeline.a``.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

from .conftest import ROOT

PACKAGE = ROOT / "pipeline"


def _module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of the module, skipping the bodies of ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for sub in child.orelse:
                    visit_stmt(sub)
                continue
            visit_stmt(child)

    def visit_stmt(node: ast.AST) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        visit(node)

    visit(tree)
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module → the modules of the package it imports."""
    files = {_module_name(p, package): p for p in package.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        here = mod.split(".") if is_pkg else mod.split(".")[:-1]
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base_parts = here[:len(here) - node.level + 1]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for t in targets:
                if t in files and t != mod:
                    graph[mod].add(t)
    return graph


def test_the_graph_sees_lazy_imports_and_skips_type_checking(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .b import g\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\n"
                              "from .sub import c\n")
    (pkg / "sub" / "__init__.py").write_text("from . import c\n")
    (pkg / "sub" / "c.py").write_text("from .. import a\n")
    graph = {k.split(".", 1)[-1] if "." in k else k: {v.split(".", 1)[-1] for v in vs}
             for k, vs in import_graph(pkg).items()}
    assert graph["a"] == {"b"}  # the import inside a function counts
    assert graph["b"] == {"sub.c"}  # TYPE_CHECKING does not; "from .sub import c" is the module sub.c
    assert graph["sub.c"] == {"a"}
    assert graph["sub"] == {"sub.c"}
    with pytest.raises(graphlib.CycleError):  # a → b → sub.c → a
        tuple(graphlib.TopologicalSorter(import_graph(pkg)).static_order())


def test_pipeline_has_no_import_cycle():
    graph = import_graph()
    assert "pipeline.poll" in graph and "pipeline.parsepool" in graph["pipeline.poll"]
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle in pipeline/: {' -> '.join(exc.args[1])}")


def test_poll_engine_and_steps_do_not_depend_on_the_orchestrators():
    graph = import_graph()
    for low in ("pipeline.poll", "pipeline.parsepool", "pipeline.pollresult", "pipeline.steps"):
        assert not graph[low] & {"pipeline.cycle", "pipeline.tasks"}, low
