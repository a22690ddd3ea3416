"""The package's imports run one way: no cycles between its parts, no edge up the layers.

A *part* is a subpackage (``latentcam.explain``) or a top-level module (``latentcam.runs``)
of ``latentcam``. Every part sits on a layer of :data:`LAYERS`, and a part may import only
parts on a lower layer: two parts on one layer are siblings and import neither each other
nor anything above them. The layers, bottom to top:

0. ``errors``: the exception types every message goes through.
1. ``io`` (atomic writes, JSON, text decoding, output checks): reads nothing of the package
   but the errors.
2. ``config`` (the typed run config): reads its files through ``io``.
3. ``data`` (datasets, layouts, the synthetic faces) and the figure helpers ``figures``
   (images, grids, overlays) and ``plots`` (matplotlib charts): plain arrays in, pictures
   out, so that every layer above can draw without reaching up into ``report``; and
   ``verdicts`` (a score read against its chance level in plain words), which ``concepts``,
   ``evaluate``, ``report`` and ``demo`` all speak.
4. ``models``: the networks, their protocol, the registry and the adapters.
5. ``checkpoint``: loading a run (checkpoint or adapted-model folder) into a model. It sits
   below ``training`` so that explaining a run never imports Lightning.
6. ``runs`` (a loaded run with a batch of its data, the run's dataset split) and
   ``generate`` (sample, reconstruct, pictures of a decoder's output): what every tool that
   works on a run shares.
7. ``explain`` (the CAM engine, traversals, metrics) and ``training`` (losses, the Lightning
   module and data module): siblings; neither needs the other.
8. ``concepts``: latent directions found and scored on a run, with the engine.
9. ``evaluate``: the metrics of a run, built on explain and concepts.
10. ``report``: the HTML report of a run, drawn from evaluate's results.
11. ``app``: the interactive explorer, which draws with report's pieces.
12. ``sweep`` and ``demo``: whole jobs (train, evaluate, report) put together.
13. ``cli``: parses arguments and calls everything below; ``__main__`` runs it.

The root package ``latentcam`` is left out: its ``__getattr__`` is the lazy public facade
(``latentcam.load_model``, ``adapt``, ``wrap``), and what the parts import from it is
``__version__`` only.

Imports inside functions count like any other: an in-function import of a latentcam module
that hides a cycle is still an edge of the graph. Outside ``cli`` (which defers its imports
so that ``--help`` starts fast) and the root facade, in-function imports are kept only for
heavy optional third-party dependencies (diffusers, pythae, matplotlib, ...), never for a
latentcam module.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import pytest

import latentcam

PACKAGE_DIR = Path(latentcam.__file__).resolve().parent

#: Layer of every part of the package (see the module docstring for why each sits where).
LAYERS: dict[str, int] = {
    "errors": 0,
    "io": 1,
    "config": 2,
    "data": 3,
    "figures": 3,
    "plots": 3,
    "verdicts": 3,
    "models": 4,
    "checkpoint": 5,
    "runs": 6,
    "generate": 6,
    "explain": 7,
    "training": 7,
    "concepts": 8,
    "evaluate": 9,
    "report": 10,
    "app": 11,
    "sweep": 12,
    "demo": 12,
    "cli": 13,
    "__main__": 14,
}

#: Parts whose in-function imports of latentcam modules are deferrals by design.
DEFERRING_PARTS = {"cli"}


class Edge(NamedTuple):
    """One import: ``source`` (a module) imports ``target`` (a module) at ``line``."""

    source: str
    target: str
    line: int
    in_function: bool


def module_name(path: Path) -> str:
    """``latentcam.explain.cam`` for ``.../latentcam/explain/cam.py``."""
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def part_of(module: str) -> str:
    """The part (subpackage or top-level module) a module belongs to; "" for the root."""
    names = module.split(".")
    return names[1] if len(names) > 1 else ""


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(tree: ast.AST, in_function: bool = False):  # type: ignore[no-untyped-def]
    for node in ast.iter_child_nodes(tree):
        inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, inner
        yield from _imports(node, inner)


def package_edges() -> list[Edge]:
    """Every import of a latentcam module by a latentcam module, module level and inside
    functions, with relative imports resolved."""
    paths = sorted(PACKAGE_DIR.rglob("*.py"))
    modules = {module_name(path) for path in paths}
    edges = []
    for path in paths:
        source = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, in_function in _imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:  # ``from latentcam import plots`` imports the module latentcam.plots
                target = _resolve(source, path.name == "__init__.py", node)
                names = [f"{target}.{alias.name}" for alias in node.names]
                targets = [name for name in names if name in modules] or [target]
            for target in targets:
                if target == "latentcam" or target.startswith("latentcam."):
                    edges.append(Edge(source, target, node.lineno, in_function))
    return edges


def _between_parts(edges: list[Edge]) -> list[Edge]:
    return [
        e
        for e in edges
        if part_of(e.source) and part_of(e.target) and part_of(e.source) != part_of(e.target)
    ]


def _listed(edges: set[tuple[str, str]]) -> str:
    return "\n".join(f"  {source} -> {target}" for source, target in sorted(edges))


@pytest.fixture(scope="module")
def edges() -> list[Edge]:
    return package_edges()


def test_every_part_has_a_layer() -> None:
    parts = {part_of(module_name(p)) for p in PACKAGE_DIR.rglob("*.py")} - {""}
    assert parts - set(LAYERS) == set(), "add these parts to LAYERS, with the reason"
    assert set(LAYERS) - parts == set(), "these LAYERS entries name no part of the package"


def test_every_import_names_a_module_of_the_package(edges: list[Edge]) -> None:
    modules = {module_name(p) for p in PACKAGE_DIR.rglob("*.py")}
    missing = {(e.source, e.target) for e in edges if e.target not in modules}
    assert not missing, "imports of modules that do not exist:\n" + _listed(missing)


def test_the_root_is_imported_for_its_version_only() -> None:
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "latentcam":
                names = [a.name for a in node.names if not (PACKAGE_DIR / f"{a.name}.py").is_file()]
                assert set(names) <= {"__version__"}, f"{path}:{node.lineno} imports {names}"


def test_no_cycle_between_parts(edges: list[Edge]) -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for e in _between_parts(edges):
        graph[part_of(e.source)].add(part_of(e.target))
    # Tarjan's strongly connected components; a component of two or more parts is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles between parts: {cycles}"


def test_no_upward_edge(edges: list[Edge]) -> None:
    upward = {
        (e.source, e.target)
        for e in _between_parts(edges)
        if LAYERS[part_of(e.target)] >= LAYERS[part_of(e.source)]
    }
    assert not upward, "imports up the layers (or between siblings):\n" + _listed(upward)


def test_in_function_imports_only_defer(edges: list[Edge]) -> None:
    deferred = {
        (e.source, e.target)
        for e in edges
        if e.in_function and part_of(e.source) and part_of(e.source) not in DEFERRING_PARTS
        if e.target != "latentcam"
    }
    assert not deferred, "in-function imports of latentcam modules:\n" + _listed(deferred)


def test_the_walk_sees_relative_and_in_function_imports() -> None:
    tree = ast.parse("from .cam import x\ndef f():\n    from ..io import y\n")
    node_cam, node_io = (n for n, _ in _imports(tree))
    assert _resolve("latentcam.explain.run", False, node_cam) == "latentcam.explain.cam"  # type: ignore[arg-type]
    assert _resolve("latentcam.explain.run", False, node_io) == "latentcam.io"  # type: ignore[arg-type]
    assert [inner for _, inner in _imports(tree)] == [False, True]
