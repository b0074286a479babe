"""The import layering of docs/architecture.md, read from the source with ast.

Every toolchain module sits on a floor; a module imports only from its own unit or from a lower
floor (side by side on one floor only where the floor allows it, never between stages); no stage
imports another stage, no backend imports a stage, there is no import loop, and only the CLI imports
click. Lazy imports inside functions count: they are imports all the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "toolchain"

# Floors, lowest first: (name, units, units on this floor may import each other).
# A unit is a module or package prefix; a module belongs to the longest unit that prefixes it.
FLOORS: list[tuple[str, tuple[str, ...], bool]] = [
    ("ground", ("toolchain", "errors", "fsutil", "recipe", "runfolder", "onnx_meta", "media", "frames",
                "weights", "video_writer", "gpumon", "progress"), True),
    ("reference", ("reference", "calibset", "draw"), True),
    ("runtime facts", ("nvinfer",), True),  # names, keys, keyfile, harness: no runner needed
    ("engines and models", ("trt", "models"), True),
    ("runners", ("runners",), True),
    ("nvinfer emulation", ("nvinfer.emulation",), True),
    ("judge", ("compare", "detector", "contours"), True),
    ("stages", ("export", "surgery", "calibrate", "engine", "parser", "deepstream", "validate"), False),
    ("chain", ("chain",), True),
    ("apps", ("blur", "detect", "doctor"), True),
    ("bench", ("bench", "bench_streams", "bench_contour"), True),  # measures the blur app
    ("cli", ("cli",), True),
]
STAGES = FLOORS[7][1]
BACKENDS = ("nvinfer", "trt", "models", "runners", "nvinfer.emulation")


def _name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_name(p): p for p in PKG.rglob("*.py")}


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """Toolchain modules imported by `name` (a `from pkg import mod` counts as pkg.mod), with line numbers."""
    out = []
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "toolchain"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "toolchain":
                continue
            for a in node.names:
                sub = f"{mod}.{a.name}"
                out.append((sub if sub in modules else mod, node.lineno))
    return out


def _unit(module: str) -> tuple[int, str]:
    """(floor index, unit) of a module: the longest unit that prefixes it."""
    rel = module.removeprefix("toolchain.") if module != "toolchain" else "toolchain"
    best = None
    for i, (_, units, _) in enumerate(FLOORS):
        for u in units:
            if (rel == u or rel.startswith(u + ".")) and (best is None or len(u) > len(best[1])):
                best = (i, u)
    if best is None:
        raise AssertionError(f"{module} is on no floor: add it to FLOORS (tests/test_architecture.py) "
                             "and to docs/architecture.md")
    return best


def _graph() -> dict[str, list[tuple[str, int]]]:
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def layering_violations(graph: dict[str, list[tuple[str, int]]]) -> list[str]:
    bad = []
    for mod, imports in sorted(graph.items()):
        fm, um = _unit(mod)
        for target, line in imports:
            ft, ut = _unit(target)
            if ut == um or ft < fm or (ft == fm and FLOORS[fm][2]):
                continue
            why = ("a stage imports another stage" if ft == fm
                   else f"floor '{FLOORS[fm][0]}' imports up to floor '{FLOORS[ft][0]}'")
            bad.append(f"{mod}:{line} imports {target}: {why}")
    return bad


def import_cycles(graph: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w, _ in graph.get(v, []):
            if w not in graph or w == v:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_module_is_on_a_floor():
    for mod in _modules():
        _unit(mod)


def test_imports_only_go_down():
    assert layering_violations(_graph()) == []


def test_no_stage_imports_another_stage_and_no_backend_imports_a_stage():
    graph = _graph()
    for mod, imports in graph.items():
        _, um = _unit(mod)
        for target, line in imports:
            _, ut = _unit(target)
            if ut in STAGES and ut != um:
                assert um not in STAGES, f"{mod}:{line}: stage {um} imports stage {ut}"
                assert um not in BACKENDS, f"{mod}:{line}: backend {um} imports stage {ut}"


def test_no_import_loops():
    assert import_cycles(_graph()) == []


def test_only_the_cli_imports_click():
    for mod, path in _modules().items():
        if mod.startswith("toolchain.cli"):
            continue
        names = {a.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, (ast.Import,))
                 for a in n.names} | {n.module for n in ast.walk(ast.parse(path.read_text()))
                                      if isinstance(n, ast.ImportFrom) and n.module}
        assert not any(n == "click" or n.startswith("click.") for n in names), f"{mod} imports click"


@pytest.mark.parametrize("module,source,found", [
    # the checker itself must catch each kind of break (planted in a copy of the graph)
    ("toolchain.calibrate.gate", "from ..validate.core import judge", "a stage imports another stage"),
    ("toolchain.trt.adapter", "from ..engine.decisions import Target", "imports up to floor 'stages'"),
    ("toolchain.reference.nms", "from ..runners import OrtRunner", "imports up to floor 'runners'"),
])
def test_the_checker_catches_a_planted_break(module, source, found):
    graph = _graph()
    modules = _modules()
    planted = _imports(module, modules[module], modules)
    tree_mod = ast.parse(source).body[0]
    assert isinstance(tree_mod, ast.ImportFrom)
    base = module.split(".")[:-1]
    base = base[: len(base) - (tree_mod.level - 1)]
    target = ".".join(base + [tree_mod.module or ""])
    graph[module] = planted + [(target, 1)]
    assert any(found in v for v in layering_violations(graph)), layering_violations(graph)


def test_the_checker_catches_a_planted_loop():
    graph = _graph()
    graph["toolchain.errors"] = graph["toolchain.errors"] + [("toolchain.fsutil", 1)]
    graph["toolchain.fsutil"] = graph["toolchain.fsutil"] + [("toolchain.errors", 1)]
    assert ["toolchain.errors", "toolchain.fsutil"] in import_cycles(graph)
