"""io_names: stable, documented I/O names that the parser and the nvinfer config rely on.

Raw layout (the exported heads): `loc` [B,N,4] box deltas, `conf` [B,N,C] probabilities,
`landmarks` [B,N,2L] deltas (names from the recipe's `outputs`). Decoded layout (decode pass):
`det_boxes` [B,K,4], `det_scores` [B,K], `det_landmarks` [B,K,2L], network-input pixels.
The input takes the recipe's name; every graph input/output gets the symbolic batch axis 'batch';
outputs are ordered boxes, scores, landmarks (the parser still finds them by name).
"""

from __future__ import annotations

from ..errors import FbtoolError
from ..reference.detections import DECODED  # the reference post-processing reads these names too
from ._graph import BATCH, finish, unique_name

ROLES = ("boxes", "scores", "landmarks")


def raw_names(recipe) -> dict[str, str]:
    o = recipe.outputs
    return {"boxes": o.boxes, "scores": o.scores, **({"landmarks": o.landmarks} if o.landmarks else {})}


def find_heads(graph, recipe) -> tuple[str, dict]:
    """(layout, {role: tensor}) for the graph's outputs: by name first, by rank/last dim otherwise."""
    by_name = {t.name: t for t in graph.outputs}
    for layout, names in (("decoded", DECODED), ("raw", raw_names(recipe))):
        found = {role: by_name[n] for role, n in names.items() if n in by_name}
        if "boxes" in found and "scores" in found:
            return layout, found
    # Unknown names (a foreign export): recognise the heads by their shapes.
    lm_dim = 2 * recipe.outputs.num_landmarks
    rank3 = [t for t in graph.outputs if len(t.shape or []) == 3]
    found, layout = {}, "raw"
    boxes = next((t for t in rank3 if t.shape[-1] == 4), None)
    if boxes is not None:
        found["boxes"] = boxes
        raw_scores = next((t for t in rank3 if isinstance(t.shape[-1], int) and t.shape[-1] <= 2), None)
        dec_scores = next((t for t in graph.outputs if len(t.shape or []) == 2 and t.shape[1] == boxes.shape[1]),
                          None)
        if raw_scores is not None:
            found["scores"] = raw_scores
        elif dec_scores is not None:
            found["scores"], layout = dec_scores, "decoded"
        lms = next((t for t in rank3 if t is not boxes and t.shape[-1] == lm_dim), None)
        if lms is not None and recipe.has_landmarks:
            found["landmarks"] = lms
    if "boxes" not in found or "scores" not in found:
        raise FbtoolError(f"cannot tell the detector heads among outputs {[t.name for t in graph.outputs]}",
                          f"name them as the recipe does ({', '.join(raw_names(recipe).values())})")
    return layout, found


def rename_tensor(graph, tensor, name: str) -> None:
    if tensor.name == name:
        return
    clash = graph.tensors().get(name)
    if clash is not None and clash is not tensor:
        clash.name = unique_name(graph, name + "_internal")
    tensor.name = name


def _dynamic_batch(tensor) -> None:
    if tensor.shape and not isinstance(tensor.shape[0], int):
        tensor.shape = [BATCH] + list(tensor.shape[1:])


def io_names(graph, ctx):
    recipe = ctx.recipe
    if len(graph.inputs) != 1:
        raise FbtoolError(f"the graph has {len(graph.inputs)} inputs, expected one image input")
    rename_tensor(graph, graph.inputs[0], recipe.input.name)
    layout, heads = find_heads(graph, recipe)
    names = DECODED if layout == "decoded" else raw_names(recipe)
    ordered = []
    for role in ROLES:
        if role in heads and role in names:
            rename_tensor(graph, heads[role], names[role])
            ordered.append(heads[role])
    graph.outputs = ordered  # anything else the exporter left as an output is not part of the contract
    for t in graph.inputs + graph.outputs:
        _dynamic_batch(t)
    return finish(graph)


def layout_metadata(model, recipe) -> dict:
    """fbtool.output_layout and fbtool.outputs for a finished model, read from its real outputs."""
    outs = {o.name: o for o in model.graph.output}
    n_lm = recipe.outputs.num_landmarks
    if recipe.outputs.boxes is None:  # a landmark model (FaceMesh): presence + landmarks, no heads to decode
        return {"output_layout": "landmarks", "outputs": {"scores": recipe.outputs.scores,
                                                          "landmarks": recipe.outputs.landmarks, "num_landmarks": n_lm}}
    if DECODED["scores"] in outs:
        dims = outs[DECODED["scores"]].type.tensor_type.shape.dim
        k = dims[1].dim_value if len(dims) > 1 and dims[1].dim_value else None
        return {"output_layout": "decoded",
                "outputs": {"boxes": DECODED["boxes"], "scores": DECODED["scores"],
                            "landmarks": DECODED["landmarks"] if DECODED["landmarks"] in outs else None,
                            "num_landmarks": n_lm, "k": k}}
    names = raw_names(recipe)
    return {"output_layout": "raw",
            "outputs": {"boxes": names["boxes"], "scores": names["scores"],
                        "landmarks": names.get("landmarks") if names.get("landmarks") in outs else None,
                        "num_landmarks": n_lm}}
