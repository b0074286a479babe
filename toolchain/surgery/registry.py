"""Pass registry and runner: pass name -> pure function (gs.Graph, PassContext) -> gs.Graph.

The order is data (the recipe's `surgery.passes`, plus `decode` placed before `io_names` when
`surgery.decode` is true). `run_passes` works on a ModelProto so that metadata_props travel with
the graph: it records the node count after every pass and rewrites fbtool.output_layout and
fbtool.outputs from the outputs the final graph really has.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..errors import FbtoolError
from ..recipe import Recipe, Surgery


@dataclass(frozen=True)
class PassContext:
    """Read-only inputs of every pass."""

    recipe: Recipe
    settings: Surgery
    opset_range: tuple[int, int] = (9, 20)  # from toolchain/data/trt10_onnx_ops.yaml


@dataclass
class PassReport:
    rows: list[dict] = field(default_factory=list)  # {"pass", "nodes_before", "nodes_after", "seconds"}

    @property
    def nodes_before(self) -> int:
        return self.rows[0]["nodes_before"] if self.rows else 0

    @property
    def nodes_after(self) -> int:
        return self.rows[-1]["nodes_after"] if self.rows else 0


def _passes() -> dict[str, Callable]:
    from .decode import decode_in_graph
    from .io_names import io_names
    from .sanitize import sanitize
    from .trt_hygiene import trt_hygiene

    return {"sanitize": sanitize, "trt_hygiene": trt_hygiene, "decode": decode_in_graph, "io_names": io_names}


PASS_NAMES = ("sanitize", "trt_hygiene", "decode", "io_names")


def pass_names(settings: Surgery) -> list[str]:
    """The recipe's pass list, with `decode` inserted before `io_names` when settings.decode is on."""
    names = list(settings.passes)
    if settings.decode and "decode" not in names:
        names.insert(names.index("io_names") if "io_names" in names else len(names), "decode")
    if not settings.decode and "decode" in names:
        raise FbtoolError("recipe field 'surgery.passes' lists 'decode' but surgery.decode is false",
                          "set surgery.decode: true (or pass --decode) instead of naming the pass")
    return names


def get_pass(name: str) -> Callable:
    table = _passes()
    if name not in table:
        raise FbtoolError(f"recipe field 'surgery.passes' names an unknown pass {name!r}",
                          f"known passes: {', '.join(PASS_NAMES)}")
    return table[name]


def apply(graph, names: Sequence[str], ctx: PassContext, report: PassReport | None = None):
    """Apply passes in order to a gs.Graph (the pure core; tests call single passes directly)."""
    import time

    for name in names:
        fn = get_pass(name)
        before = len(graph.nodes)
        t0 = time.perf_counter()
        graph = fn(graph, ctx)
        if report is not None:
            report.rows.append({"pass": name, "nodes_before": before, "nodes_after": len(graph.nodes),
                                "seconds": round(time.perf_counter() - t0, 3)})
    return graph


def run_passes(model, recipe: Recipe, names: Sequence[str] | None = None, settings: Surgery | None = None,
               opset_range: tuple[int, int] | None = None):
    """ModelProto in, (ModelProto, PassReport) out. Metadata is carried over and updated."""
    from ..onnx_meta import get_metadata, set_metadata
    from ._graph import to_graph, to_model
    from .io_names import layout_metadata
    from .trt_lint import load_table

    settings = settings or recipe.surgery
    names = list(names) if names is not None else pass_names(settings)
    for n in names:
        get_pass(n)  # fail on a typo before doing any work
    if opset_range is None:
        t = load_table()
        opset_range = (t["opset"]["min"], t["opset"]["max"])
    ctx = PassContext(recipe, settings, opset_range)
    report = PassReport()
    graph = apply(to_graph(model), names, ctx, report)
    out = to_model(graph)
    for p in model.metadata_props:  # graphsurgeon does not carry these
        q = out.metadata_props.add()
        q.key, q.value = p.key, p.value
    out.doc_string = model.doc_string
    meta = get_metadata(out)
    meta.update(layout_metadata(out, recipe))
    meta["surgery"] = {"passes": names, "decode": "decode" in names, "top_k": settings.top_k,
                       "score_prefilter": settings.score_prefilter,
                       "nodes_before": report.nodes_before, "nodes_after": report.nodes_after}
    set_metadata(out, meta)
    return out, report
