"""decode: append the anchor decode so the graph outputs faces in network-input pixels.

The formulas are toolchain/reference/decode.py's, rewritten in pixel units so that each output is
one multiply-add on constants (anchors from toolchain.reference.anchors for the graph's input size):
  centre = A_c + d_xy * (v0 * A_wh)          box = [centre - wh/2, centre + wh/2]
  wh     = A_wh * exp(d_wh * v1)             landmark k = A_c + d_k * (v0 * A_wh)
with A_c, A_wh the anchor centre and size in pixels. Score = probability of class 1 (class 0 for a
single-class head), as the reference takes it.
Options: top_k keeps the K best anchors (TopK, sorted, ties to the lower index like the
reference's stable argsort); score_prefilter zeroes scores <= threshold, so a parser only
thresholds. Outputs det_boxes [B,K,4], det_scores [B,K], det_landmarks [B,K,2L].
"""

from __future__ import annotations

import numpy as np

from ..errors import FbtoolError
from ._graph import const, finish
from .io_names import DECODED, find_heads, rename_tensor


class _Builder:
    """Appends nodes with unique names under a 'decode/' prefix."""

    def __init__(self, graph):
        self.graph = graph
        self.n = 0

    def op(self, op: str, inputs, attrs=None, dtype=np.float32, outputs: int = 1):
        import onnx_graphsurgeon as gs

        self.n += 1
        base = f"decode/{op}_{self.n}"
        dtypes = dtype if isinstance(dtype, tuple) else (dtype,) * outputs
        outs = [gs.Variable(f"{base}_out{i}", dtype=dtypes[i]) for i in range(outputs)]
        self.graph.nodes.append(gs.Node(op, name=base, inputs=list(inputs), outputs=outs, attrs=attrs or {}))
        return outs[0] if outputs == 1 else outs

    def const(self, tag: str, value, dtype=np.float32):
        self.n += 1
        return const(f"decode/{tag}_{self.n}", value, dtype)


def _input_size(graph, recipe) -> tuple[int, int]:
    shape = list(graph.inputs[0].shape or [])
    h, w = (shape[2], shape[3]) if len(shape) == 4 else (None, None)
    if not (isinstance(h, int) and isinstance(w, int)):
        if recipe.input.dynamic_hw:
            raise FbtoolError("decode-in-graph needs a fixed input height and width (anchors are constants)",
                              "set input.dynamic_hw: false in the recipe, or keep the raw layout")
        h, w = recipe.input.height, recipe.input.width
    return w, h


def decode_in_graph(graph, ctx):
    from ..reference.anchors import anchors_for

    recipe, s = ctx.recipe, ctx.settings
    layout, heads = find_heads(graph, recipe)
    if layout != "raw":
        raise FbtoolError("decode-in-graph needs the raw heads, the graph is already decoded")
    w, h = _input_size(graph, recipe)
    anchors = anchors_for(recipe, w, h).astype(np.float64)
    n = anchors.shape[0]
    n_graph = (heads["boxes"].shape or [None, None])[1]
    if isinstance(n_graph, int) and n_graph != n:
        raise FbtoolError(f"the box head has {n_graph} rows but the recipe's anchors give {n} at {w}x{h}",
                          "check anchors.steps/min_sizes against the model")
    if s.top_k and s.top_k > n:
        raise FbtoolError(f"recipe field 'surgery.top_k' ({s.top_k}) exceeds the {n} anchors")
    v0, v1 = recipe.anchors.variance
    wh = np.array([w, h], dtype=np.float64)
    a_c, a_wh = anchors[None, :, :2] * wh, anchors[None, :, 2:] * wh  # [1, N, 2] pixels
    b = _Builder(graph)

    d_xy, d_wh = b.op("Split", [heads["boxes"], b.const("split", [2, 2], np.int64)], {"axis": 2}, outputs=2)
    centre = b.op("Add", [b.const("anchor_centre", a_c), b.op("Mul", [d_xy, b.const("v0_wh", v0 * a_wh)])])
    size = b.op("Mul", [b.const("anchor_size", a_wh), b.op("Exp", [b.op("Mul", [d_wh, b.const("v1", [v1])])])])
    half = b.op("Mul", [size, b.const("half", [0.5])])
    boxes = b.op("Concat", [b.op("Sub", [centre, half]), b.op("Add", [centre, half])], {"axis": 2})

    probs = heads["scores"]
    channels = (probs.shape or [None, None, 2])[-1]
    cls = 1 if not isinstance(channels, int) or channels > 1 else 0
    scores = b.op("Gather", [probs, b.const("face_class", np.int32(cls), np.int32)], {"axis": 2})

    lms = None
    if "landmarks" in heads:
        k = recipe.outputs.num_landmarks
        lms = b.op("Add", [b.const("anchor_centre_lm", np.tile(a_c, (1, 1, k))),
                           b.op("Mul", [heads["landmarks"], b.const("v0_wh_lm", np.tile(v0 * a_wh, (1, 1, k)))])])

    if s.top_k:
        scores, idx = b.op("TopK", [scores, b.const("k", [s.top_k], np.int64)],
                           {"axis": 1, "largest": 1, "sorted": 1}, dtype=(np.float32, np.int64), outputs=2)
        idx = b.op("Cast", [idx], {"to": 6}, dtype=np.int32)  # INT32 indices: TensorRT/DeepStream friendly
        idx = b.op("Unsqueeze", [idx, b.const("axis2", [2], np.int64)], dtype=np.int32)  # [B, K, 1]

        def take(t, width):  # broadcast the indices over the last axis, then gather rows
            rows = b.op("Add", [idx, b.const("zeros", np.zeros((1, 1, width), np.int32), np.int32)], dtype=np.int32)
            return b.op("GatherElements", [t, rows], {"axis": 1})

        boxes = take(boxes, 4)
        lms = take(lms, 2 * recipe.outputs.num_landmarks) if lms is not None else None
    if s.score_prefilter > 0:
        keep = b.op("Greater", [scores, b.const("prefilter", [s.score_prefilter])], dtype=np.bool_)
        scores = b.op("Where", [keep, scores, b.const("zero", [0.0])])

    k_out = s.top_k or n
    named = []
    for role, t, shape in (("boxes", boxes, ["batch", k_out, 4]), ("scores", scores, ["batch", k_out]),
                           ("landmarks", lms, ["batch", k_out, 2 * recipe.outputs.num_landmarks])):
        if t is None:
            continue
        rename_tensor(graph, t, DECODED[role])
        t.shape = shape
        named.append(t)
    graph.outputs = named
    return finish(graph)
