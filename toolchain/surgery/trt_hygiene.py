"""trt_hygiene: what TensorRT's ONNX parser and DeepStream want, with the batch axis left dynamic.

1. Shape chains (Shape -> Gather -> Unsqueeze -> Concat -> Reshape, as the TorchScript exporter
   writes `x.view(x.size(0), -1, 4)`) become one constant Reshape target: onnxruntime's symbolic
   shape inference gives the Reshape output, e.g. [batch, 7680, 4], and the one symbolic dim becomes
   -1. The dead chain is then removed by cleanup, so TensorRT sees static shapes except the batch.
2. INT64 where only an index is meant (Cast to INT64 or INT64 constants feeding Gather/
   GatherElements/ScatterElements indices) becomes INT32; INT64 graph outputs get a Cast to INT32
   (DeepStream parsers read INT32, TensorRT before 10 casts INT64 down with clamping).
   Shape-like operands (Reshape shape, axes, TopK K, Split sizes) stay INT64 as the ONNX spec asks:
   the parser reads those at build time.
3. The input batch axis must be symbolic: a graph exported with a fixed batch is refused here.
"""

from __future__ import annotations

import numpy as np

from ..errors import FbtoolError
from ._graph import const, const_value, finish, is_const, replace_input, to_model, unique_name

_INDEX_INPUT = {"Gather": 1, "GatherElements": 1, "ScatterElements": 1}  # ops whose index operand takes INT32
_INT32 = np.iinfo(np.int32)


def _symbolic_shapes(graph) -> dict[str, list]:
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    # auto_merge: Resize and broadcasts otherwise leave fresh symbols; the stage re-checks parity anyway.
    model = SymbolicShapeInference.infer_shapes(to_model(graph), auto_merge=True)
    out = {}
    for vi in list(model.graph.value_info) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        out[vi.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims]
    return out


def static_reshapes(graph) -> int:
    """Give every Reshape fed by a computed shape a constant target. Returns how many changed."""
    pending = [n for n in graph.nodes if n.op == "Reshape" and const_value(n.inputs[1]) is None]
    if not pending:
        return 0
    try:
        shapes = _symbolic_shapes(graph)
    except Exception:  # symbolic inference gave up: leave the graph as it is, the lint will tell
        return 0
    changed = 0
    for node in pending:
        dims = shapes.get(node.outputs[0].name)
        if not dims or any(d == 0 for d in dims):
            continue
        symbolic = [d for d in dims if not isinstance(d, int)]
        if len(symbolic) > 1:
            continue  # two unknown dims cannot be expressed with a single -1
        target = [d if isinstance(d, int) else -1 for d in dims]
        node.inputs[1] = const(unique_name(graph, node.outputs[0].name + "_shape"), target, np.int64)
        changed += 1
    return changed


def _only_index_uses(tensor) -> bool:
    uses = tensor.outputs
    return bool(uses) and all(
        c.op in _INDEX_INPUT and len(c.inputs) > _INDEX_INPUT[c.op] and c.inputs[_INDEX_INPUT[c.op]] is tensor
        and sum(t is tensor for t in c.inputs) == 1 for c in uses)


def narrow_int64(graph) -> int:
    import onnx
    import onnx_graphsurgeon as gs

    changed = 0
    for node in list(graph.nodes):
        if node.op == "Cast" and node.attrs.get("to") == onnx.TensorProto.INT64:
            out = node.outputs[0]
            if out not in graph.outputs and _only_index_uses(out):
                node.attrs["to"] = onnx.TensorProto.INT32
                out.dtype = np.int32
                changed += 1
    for name, t in list(graph.tensors().items()):
        if is_const(t) and t.values.dtype == np.int64 and _only_index_uses(t):
            v = t.values
            if v.size and (v.min() < _INT32.min or v.max() > _INT32.max):
                continue
            narrow = const(unique_name(graph, name + "_i32"), v.astype(np.int32))
            for c in list(t.outputs):
                replace_input(c, t, narrow)
            changed += 1
    for i, out in enumerate(list(graph.outputs)):
        if out.dtype == np.int64 and out.inputs:
            name = out.name
            out.name = unique_name(graph, name + "_i64")
            cast_out = gs.Variable(name, dtype=np.int32, shape=out.shape)
            graph.nodes.append(gs.Node("Cast", name=unique_name(graph, name + "_to_int32"),
                                       attrs={"to": onnx.TensorProto.INT32}, inputs=[out], outputs=[cast_out]))
            graph.outputs[i] = cast_out
            changed += 1
    return changed


def check_batch_dynamic(graph, ctx) -> None:
    b = ctx.recipe.input.batch
    for t in graph.inputs:
        if t.shape and isinstance(t.shape[0], int) and b.max > 1:
            raise FbtoolError(f"input '{t.name}' has a fixed batch of {t.shape[0]}, the recipe asks for "
                              f"{b.min}..{b.max}", "re-export with a dynamic batch axis (fbtool export does)")


def trt_hygiene(graph, ctx):
    check_batch_dynamic(graph, ctx)
    static_reshapes(graph)
    graph = finish(graph)
    narrow_int64(graph)
    return finish(graph)
