"""The import graph of skillgen, skilltrain and cluster, read with ``ast``: layers and circles.

Why read the source instead of importing it: an import inside a function or under ``TYPE_CHECKING``
never runs at start-up, yet it ties two modules together as much as one at the top of the file (the
next maintainer has to move both). So every ``import`` / ``from ... import`` statement counts, wherever
it stands, and so does a package's lazy public API (a ``_EXPORTS = {name: "module"}`` table handed to
``lazy_exports``), because ``from skillgen import RunDir`` runs ``skillgen.rundir.rundir``.

    python -m tests.helpers.import_graph          # the layers, then every circle and upward import
    python -m tests.helpers.import_graph --edges  # also every edge, with file and line

Exit status 1 when there is a circle or an import that points up the layers of
``/work/shared/docs/architecture.md`` ("Layers"), 0 otherwise. ``tests/test_import_graph.py`` runs the
same checks.
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("skillgen", "skilltrain", "cluster")

# Top to bottom: a module may import its own layer's modules and any layer below, never one above.
# A module belongs to the layer of the longest prefix that names it ("=name": that module only, not
# its submodules: a package's public API sits on top of what it exports). Within a layer, "|" splits
# siblings (online and batch are two drivers): siblings may not import each other.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cluster", ("cluster",)),
    ("skilltrain: public API", ("=skilltrain",)),
    ("skilltrain: commands", ("skilltrain.cli", "skilltrain.training.cli", "skilltrain.evaluation.cli",
                              "skilltrain.extraction.cli", "skilltrain.serve")),
    ("skilltrain: training | extraction", ("skilltrain.training", "skilltrain.config", "skilltrain.card", "|",
                                           "skilltrain.extraction")),
    ("skilltrain: evaluation", ("skilltrain.evaluation",)),
    ("skilltrain: ranking", ("skilltrain.ranking", "skilltrain.coverage", "skilltrain.kernels")),
    ("skilltrain: model", ("skilltrain.model",)),
    ("skilltrain: scoring", ("skilltrain.scoring", "skilltrain.packed")),
    ("skilltrain: encoders", ("skilltrain.encoders", "skilltrain.cache")),
    ("skillgen: public API", ("=skillgen",)),
    ("skillgen: commands", ("skillgen.cli", "skillgen.commands", "skillgen.simulator.cli",
                            "skillgen.simulator.__main__")),
    ("skillgen: entry point", ("skillgen.generation", "skillgen.checks")),
    ("skillgen: drivers", ("skillgen.online", "|", "skillgen.batch")),
    ("skillgen: plan", ("skillgen.summary", "skillgen.plan", "skillgen.cost_estimate")),
    ("skillgen: quality | export", ("skillgen.quality", "|", "skillgen.export")),
    ("skillgen: rundir", ("skillgen.rundir",)),
    ("skillgen: simulator", ("skillgen.simulator",)),
    ("skillgen: llm", ("skillgen.llm", "skillgen.config")),
    ("skillgen: common", ("skillgen.common",)),
)

# What skilltrain and cluster may import of skillgen: the root package's __all__ and skillgen.common.
PUBLIC_SKILLGEN = ("skillgen", "skillgen.common")


@dataclass(frozen=True)
class Edge:
    """``src`` imports ``dst`` at ``path:line``; ``how``: top, function, type_checking or lazy."""

    src: str
    dst: str
    path: str
    line: int
    how: str
    names: tuple[str, ...] = ()

    def where(self) -> str:
        return f"{self.path}:{self.line} ({self.how})"


# ---- reading the source -------------------------------------------------------------------------


def module_files(root: Path = REPO, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    """Every module of ``packages`` by dotted name (a package is its ``__init__``)."""
    out: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module) -> Iterator[tuple[ast.stmt, str]]:
    """Every import statement with where it stands (top, function, type_checking), however deeply nested."""

    def walk(node: ast.AST, how: str) -> Iterator[tuple[ast.stmt, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, how
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                yield from walk(child, "function" if how == "top" else how)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    yield from walk(ast.Module(body=[stmt], type_ignores=[]), "type_checking")
                for stmt in child.orelse:
                    yield from walk(ast.Module(body=[stmt], type_ignores=[]), how)
            else:
                yield from walk(child, how)

    yield from walk(tree, "top")


def _lazy_exports(tree: ast.Module) -> Iterator[tuple[int, str, str]]:
    """``(line, name, module)`` of a ``_EXPORTS = {name: "module"}`` table, the lazy public API of a package."""
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets)
                and isinstance(node.value, ast.Dict)):
            for key, value in zip(node.value.keys, node.value.values):
                if isinstance(key, ast.Constant) and isinstance(value, ast.Constant):
                    yield node.lineno, str(key.value), str(value.value)


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _target(name: str, known: dict[str, Path]) -> str | None:
    """The module ``name`` lands on: itself, or its closest known parent (``a.b.func`` -> ``a.b``)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def build_graph(root: Path = REPO, packages: Iterable[str] = PACKAGES) -> tuple[dict[str, Path], list[Edge]]:
    """The modules of ``packages`` and every import between two of them."""
    files = module_files(root, packages)
    edges: list[Edge] = []
    for module, path in files.items():
        rel = str(path.relative_to(root))
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        is_package = path.name == "__init__.py"
        for node, how in _imports(tree):
            if isinstance(node, ast.Import):
                targets = [(alias.name, ()) for alias in node.names]
            else:
                base = _absolute(module, is_package, node)
                # ``from a import b``: b may be a module of its own (a.b) or a name in a
                targets = [(f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base, (alias.name,))
                           for alias in node.names]
            by_dst: dict[str, tuple[str, ...]] = {}
            for name, names in targets:
                dst = _target(name, files)
                if dst is not None and dst != module:
                    by_dst[dst] = by_dst.get(dst, ()) + names
            edges += [Edge(module, dst, rel, node.lineno, how, names) for dst, names in by_dst.items()]
        for line, name, target in _lazy_exports(tree):
            dst = _target(target, files)
            if dst is not None and dst != module:
                edges.append(Edge(module, dst, rel, line, "lazy", (name,)))
    return files, edges


# ---- checks -------------------------------------------------------------------------------------


def layer_of(module: str) -> tuple[int, int] | None:
    """``(layer index, sibling group)`` of the longest prefix naming ``module`` (0 = top)."""
    best: tuple[int, int, int] | None = None  # (prefix length, layer, group)
    for index, (_, prefixes) in enumerate(LAYERS):
        group = 0
        for prefix in prefixes:
            if prefix == "|":
                group += 1
                continue
            exact = prefix.startswith("=")
            name = prefix.lstrip("=")
            if (module == name or (not exact and module.startswith(name + "."))) and (best is None or len(name) > best[0]):
                best = (len(name), index, group)
    return None if best is None else (best[1], best[2])


def upward(edges: Iterable[Edge]) -> list[tuple[Edge, str]]:
    """Imports that point up the layers (or across siblings), with why."""
    out = []
    for edge in edges:
        src, dst = layer_of(edge.src), layer_of(edge.dst)
        if src is None or dst is None:
            continue
        if dst[0] < src[0]:
            out.append((edge, f"{LAYERS[src[0]][0]} imports {LAYERS[dst[0]][0]}, a layer above it"))
        elif dst[0] == src[0] and dst[1] != src[1]:
            out.append((edge, f"siblings in {LAYERS[src[0]][0]} import each other"))
    return out


def foreign(edges: Iterable[Edge], modules: dict[str, Path]) -> list[tuple[Edge, str]]:
    """skillgen importing skilltrain or cluster; skilltrain or cluster reaching past skillgen's public surface."""
    public_all = _root_all(modules)
    out = []
    for edge in edges:
        src_pkg, dst_pkg = edge.src.split(".")[0], edge.dst.split(".")[0]
        if src_pkg == "skillgen" and dst_pkg != "skillgen":
            out.append((edge, f"skillgen must not import {dst_pkg}"))
        elif src_pkg != "skillgen" and dst_pkg == "skillgen":
            if edge.dst not in PUBLIC_SKILLGEN:
                out.append((edge, f"{edge.dst} is not skillgen's public surface (skillgen's __all__ or skillgen.common)"))
            elif edge.dst == "skillgen" and edge.how != "lazy":
                missing = [n for n in edge.names if n not in public_all]
                if missing:
                    out.append((edge, f"{', '.join(missing)} not in skillgen.__all__"))
    return out


def _root_all(modules: dict[str, Path]) -> set[str]:
    path = modules.get("skillgen")
    if path is None:
        return set()
    return {name for _, name, _ in _lazy_exports(ast.parse(path.read_text(encoding="utf-8")))}


def circles(edges: Iterable[Edge]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted, largest first."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.src, set()).add(edge.dst)
        graph.setdefault(edge.dst, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return sorted(found, key=lambda c: (-len(c), c))


def cycle_path(component: list[str], edges: Iterable[Edge]) -> list[Edge]:
    """One closed path through a circle, as the edges that make it (for a readable message)."""
    members = set(component)
    out: dict[str, list[Edge]] = {}
    for edge in edges:
        if edge.src in members and edge.dst in members:
            out.setdefault(edge.src, []).append(edge)
    start = component[0]
    # breadth-first from start back to start
    frontier: list[tuple[str, list[Edge]]] = [(start, [])]
    seen = {start}
    while frontier:
        node, path = frontier.pop(0)
        for edge in sorted(out.get(node, []), key=lambda e: e.dst):
            if edge.dst == start:
                return path + [edge]
            if edge.dst not in seen:
                seen.add(edge.dst)
                frontier.append((edge.dst, path + [edge]))
    return []


# ---- report -------------------------------------------------------------------------------------


def report(root: Path = REPO, show_edges: bool = False) -> tuple[str, int]:
    """The printed report and the exit status (1 on a circle, an upward or a foreign import)."""
    modules, edges = build_graph(root)
    lines = [f"import graph: {len(modules)} modules, {len(edges)} imports "
             f"({sum(e.how != 'top' for e in edges)} inside functions, under TYPE_CHECKING or lazy)", "", "layers (top to bottom):"]
    for index, (name, _) in enumerate(LAYERS):
        members = sorted(m for m in modules if (layer_of(m) or (-1, 0))[0] == index)
        lines.append(f"  {index + 1:2d}. {name}: {len(members)} modules")
    unplaced = sorted(m for m in modules if layer_of(m) is None)
    if unplaced:
        lines.append(f"  not in any layer: {', '.join(unplaced)}")
    found = circles(edges)
    lines += ["", f"circles: {len(found) or 'none'}"]
    for component in found:
        lines.append(f"  - {' <-> '.join(component)}")
        for edge in cycle_path(component, edges):
            lines.append(f"      {edge.src} -> {edge.dst}  at {edge.where()}")
    ups = upward(edges)
    lines += ["", f"imports pointing up the layers: {len(ups) or 'none'}"]
    lines += [f"  - {e.src} -> {e.dst}  at {e.where()}: {why}" for e, why in ups]
    bad = foreign(edges, modules)
    lines += ["", f"imports past skillgen's public surface: {len(bad) or 'none'}"]
    lines += [f"  - {e.src} -> {e.dst}  at {e.where()}: {why}" for e, why in bad]
    if show_edges:
        lines += ["", "edges:"] + [f"  {e.src} -> {e.dst}  at {e.where()}" for e in sorted(edges, key=lambda e: (e.src, e.dst))]
    return "\n".join(lines), int(bool(found or ups or bad))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.helpers.import_graph", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=REPO, help="repository root (default: this checkout)")
    parser.add_argument("--edges", action="store_true", help="also list every import edge")
    args = parser.parse_args(argv)
    text, status = report(args.root, args.edges)
    print(text)
    return status


if __name__ == "__main__":
    sys.exit(main())
