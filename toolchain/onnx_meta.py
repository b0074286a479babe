"""ONNX metadata_props: everything later stages need travels inside the model file.

Keys are `fbtool.<name>`; values are JSON. Later stages (surgery, calibrate, deepstream, parser)
read preprocessing, anchors and output semantics from here, not from a second copy.
"""

from __future__ import annotations

import json

from . import __version__

PREFIX = "fbtool."


def recipe_metadata(recipe, weights_sha256: str, extra: dict | None = None) -> dict:
    d = recipe.to_dict()
    meta = {
        "version": __version__,
        "recipe_name": recipe.name,
        "recipe_hash": recipe.hash,
        "preprocess_hash": recipe.preprocess_hash(),
        "weights_sha256": weights_sha256,
        "family": recipe.family,
        "variant": recipe.variant,
        "labels": list(recipe.labels),
        "input": d["input"],
        "preprocess": d["preprocess"],
        "anchors": d["anchors"],
        "outputs": d["outputs"],
        "thresholds": d["thresholds"],
        "mask": d["mask"],
        "output_layout": "raw",  # raw heads; surgery's decode-in-graph changes this to "decoded"
    }
    meta.update(extra or {})
    return meta


def set_metadata(model, meta: dict) -> None:
    existing = {p.key: p for p in model.metadata_props}
    for k, v in meta.items():
        key = PREFIX + k
        val = json.dumps(v, sort_keys=True)
        if key in existing:
            existing[key].value = val
        else:
            p = model.metadata_props.add()
            p.key, p.value = key, val


def get_metadata(model_or_path) -> dict:
    import onnx

    model = model_or_path
    if not hasattr(model_or_path, "metadata_props"):
        model = onnx.load(str(model_or_path), load_external_data=False)
    out = {}
    for p in model.metadata_props:
        if p.key.startswith(PREFIX):
            try:
                out[p.key[len(PREFIX):]] = json.loads(p.value)
            except json.JSONDecodeError:
                out[p.key[len(PREFIX):]] = p.value
    return out
