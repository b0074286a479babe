"""sanitize: fold constants, bypass Identity/Dropout, drop dead nodes, infer shapes, fix the opset.

Constant folding is onnx-graphsurgeon's `fold_constants` (it evaluates constant sub-graphs with
onnxruntime, and folds Shape ops of static tensors); this pass never computes a value itself.
The opset is kept when TensorRT 10's ONNX parser accepts it (range from the operator table),
otherwise the model is converted with onnx.version_converter to the nearest accepted opset.
"""

from __future__ import annotations

from ..errors import FbtoolError
from ._graph import const_value, finish, infer_shapes, replace_input, to_graph, to_model

# Dropout in an inference graph is the identity on its first output (is_training is false).
_PASSTHROUGH = ("Identity", "Dropout")


def _truthy_or_unknown(tensor) -> bool:
    value = const_value(tensor) if tensor.name else None
    return bool(value) if value is not None else bool(tensor.name)


def bypass_passthrough(graph):
    """Rewire consumers of Identity/Dropout to the op's input; keep a graph output's name stable."""
    for node in list(graph.nodes):
        if node.op not in _PASSTHROUGH or not node.inputs or not node.outputs:
            continue
        if node.op == "Dropout" and (len(node.outputs) > 1 and node.outputs[1].outputs):
            continue  # someone reads the mask: not a pass-through
        if node.op == "Dropout" and len(node.inputs) > 2 and _truthy_or_unknown(node.inputs[2]):
            continue  # training_mode may be on: leave it (the lint reports it for TensorRT)
        src, dst = node.inputs[0], node.outputs[0]
        if dst in graph.outputs:
            # The output name is the contract: hand it to the producer of src when that is safe.
            if src in graph.inputs or src in graph.outputs or not src.inputs or len(src.outputs) > 1:
                continue
            dst_name = dst.name
            dst.name = dst_name + "__bypassed"
            src.name = dst_name
            graph.outputs[graph.outputs.index(dst)] = src
            src.dtype, src.shape = dst.dtype or src.dtype, dst.shape or src.shape
        else:
            for consumer in list(dst.outputs):
                replace_input(consumer, dst, src)
        node.outputs.clear()
    return graph


def fix_opset(graph, lo: int, hi: int):
    import onnx
    from onnx import version_converter

    opset = graph.opset
    if lo <= opset <= hi:
        return graph
    target = min(max(opset, lo), hi)
    try:
        model = version_converter.convert_version(to_model(graph), target)
        onnx.checker.check_model(model)
    except Exception as exc:
        raise FbtoolError(f"opset {opset} is outside TensorRT 10's range {lo}..{hi} and the conversion to "
                          f"{target} failed: {str(exc).splitlines()[0][:120]}",
                          f"re-export with --opset {target}") from None
    return to_graph(model)


def sanitize(graph, ctx):
    graph = fix_opset(graph, *ctx.opset_range)
    graph = finish(bypass_passthrough(graph))
    try:
        graph.fold_constants(fold_shapes=True, error_ok=False)
    except Exception as exc:
        raise FbtoolError(f"constant folding (onnx-graphsurgeon) failed: {str(exc).splitlines()[0][:160]}",
                          "run without sanitize (--passes trt_hygiene,io_names) and report the model") from None
    graph = finish(graph)
    # Only the default domain is kept: imports of other domains left behind by exporters
    # (unused local-function domains) make some parsers reject the file.
    used = {n.domain for n in graph.nodes if n.domain}
    graph.import_domains = [d for d in (graph.import_domains or []) if not d.domain or d.domain in used] or None
    return finish(infer_shapes(graph))
