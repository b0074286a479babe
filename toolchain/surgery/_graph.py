"""Small helpers shared by the passes: ONNX <-> graphsurgeon round trips, constants, shape inference.

Every pass works on an onnx-graphsurgeon Graph; a few steps (shape inference, opset conversion) need
the ModelProto, so they round-trip through `to_model` / `to_graph`. graphsurgeon drops
metadata_props on import; `run_passes` carries them over from the input model.
"""

from __future__ import annotations

import numpy as np

BATCH = "batch"  # the symbolic batch axis name every fbtool graph uses on its inputs and outputs


def to_graph(model):
    import onnx_graphsurgeon as gs

    return gs.import_onnx(model)


def to_model(graph, check_types: bool = True):
    import onnx_graphsurgeon as gs

    model = gs.export_onnx(graph, do_type_check=check_types)
    model.producer_name = graph.producer_name or "fbtool"
    return model


def infer_shapes(graph):
    """ONNX shape inference on a graph (keeps symbolic dims such as 'batch')."""
    import onnx

    model = onnx.shape_inference.infer_shapes(to_model(graph), strict_mode=False)
    return to_graph(model)


def const(name: str, value, dtype=None):
    import onnx_graphsurgeon as gs

    # np.array, not np.ascontiguousarray: the latter turns a 0-d scalar (a Gather index) into shape [1].
    return gs.Constant(name, np.array(value, dtype=dtype, order="C"))


def unique_name(graph, base: str) -> str:
    names = set(graph.tensors().keys()) | {n.name for n in graph.nodes}
    if base not in names:
        return base
    i = 1
    while f"{base}_{i}" in names:
        i += 1
    return f"{base}_{i}"


def consumers(tensor) -> list:
    return list(tensor.outputs)


def is_const(tensor) -> bool:
    import onnx_graphsurgeon as gs

    return isinstance(tensor, gs.Constant)


def const_value(tensor):
    """numpy value of a Constant tensor or of a Constant node's output; None otherwise."""
    import onnx_graphsurgeon as gs

    if isinstance(tensor, gs.Constant):
        return tensor.values
    if len(tensor.inputs) == 1 and tensor.inputs[0].op == "Constant":
        attrs = tensor.inputs[0].attrs
        if "value" in attrs:
            return attrs["value"].values
    return None


def finish(graph):
    """Every pass ends here: drop dead nodes and tensors, restore topological order."""
    return graph.cleanup(remove_unused_graph_inputs=False).toposort()


def replace_input(node, old, new) -> None:
    """Point node's operand(s) `old` at `new` (graphsurgeon's lists need item assignment, not slices)."""
    for i, t in enumerate(list(node.inputs)):
        if t is old:
            node.inputs[i] = new
