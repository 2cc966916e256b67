"""The import graph of skillgen, skilltrain and cluster (read with ``ast``, so imports inside functions and
under TYPE_CHECKING count): no circles, layers that point one way, and skillgen reached from outside only
through its public surface. ``python -m tests.helpers.import_graph`` prints the same checks."""

from __future__ import annotations

import functools
import textwrap
from pathlib import Path

from helpers.import_graph import build_graph, circles, foreign, report, upward


@functools.lru_cache(maxsize=1)
def graph():
    """This checkout's graph, built once for the tests below (about 130 files parsed)."""
    return build_graph()


def _lines(found) -> str:
    return "\n".join(f"{edge.src} -> {edge.dst} at {edge.where()}: {why}" for edge, why in found)


def test_no_import_circles_counting_imports_inside_functions_and_type_checking():
    _, edges = graph()
    assert circles(edges) == [], report()[0]  # the report names one closed path through each circle


def test_imports_point_down_the_layers():
    _, edges = graph()
    found = upward(edges)
    assert not found, _lines(found)


def test_skillgen_imports_neither_skilltrain_nor_cluster_and_they_use_only_its_public_surface():
    modules, edges = graph()
    found = foreign(edges, modules)
    assert not found, _lines(found)


def test_no_lazy_export_is_shadowed_by_a_submodule_of_the_same_name():
    """``from skillgen import estimate`` once returned the module skillgen/estimate.py, not the function:
    importing a submodule sets it as the package's attribute, which wins over the lazy ``__getattr__``."""
    import ast

    modules, _ = graph()
    for package in ("skillgen", "skillgen.common", "skilltrain"):
        tree = ast.parse(modules[package].read_text(encoding="utf-8"))
        names = {key.value for node in tree.body if isinstance(node, ast.Assign)
                 and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets)
                 for key in node.value.keys}
        assert names, package
        assert not {f"{package}.{name}" for name in names} & set(modules), package


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_the_checks_catch_a_circle_through_a_function_a_type_checking_import_and_a_reach_into_internals(tmp_path):
    """The detector itself, on a made-up tree: each rule fires where it should and only there."""
    _tree(tmp_path, {
        "skillgen/__init__.py": '_EXPORTS = {"RunDir": "skillgen.rundir.rundir"}\n',
        "skillgen/rundir/__init__.py": "",
        "skillgen/rundir/rundir.py": """
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from skillgen.plan import SkillTask
            def missing():
                from ..plan import build_tasks
        """,
        "skillgen/plan.py": "from skillgen.rundir.rundir import RunDir\n",
        "skillgen/common/__init__.py": "",
        "skillgen/common/storage.py": "import skilltrain.model\n",
        "skilltrain/__init__.py": "",
        "skilltrain/model.py": "from skillgen import RunDir, secret\nfrom skillgen.common import UserError\n",
        "cluster/__init__.py": "",
        "cluster/pipeline.py": "from skillgen.rundir.sinks import ROWS_DIR\nimport skillgen.plan\n",
    })
    modules, edges = build_graph(tmp_path)
    assert circles(edges) == [["skillgen.plan", "skillgen.rundir.rundir"]]
    hows = {(e.src, e.dst): e.how for e in edges}
    assert hows[("skillgen.rundir.rundir", "skillgen.plan")] in ("type_checking", "function")
    assert hows[("skillgen", "skillgen.rundir.rundir")] == "lazy"
    ups = {(e.src, e.dst) for e, _ in upward(edges)}
    assert ("skillgen.rundir.rundir", "skillgen.plan") in ups and ("skillgen.plan", "skillgen.rundir.rundir") not in ups
    assert ("skillgen.common.storage", "skilltrain.model") in ups  # skillgen below skilltrain
    bad = {(e.src, e.dst, why.split(" ")[0]) for e, why in foreign(edges, modules)}
    assert ("skillgen.common.storage", "skilltrain.model", "skillgen") in bad
    assert ("skilltrain.model", "skillgen", "secret") in bad  # a name not in skillgen's __all__
    assert ("cluster.pipeline", "skillgen.plan", "skillgen.plan") in bad  # an internal module
    assert not any(src == "skilltrain.model" and dst == "skillgen.common" for src, dst, _ in bad)
    text, status = report(tmp_path)
    assert status == 1 and "skillgen.plan <-> skillgen.rundir.rundir" in text
