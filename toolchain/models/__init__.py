"""Model families, written in this project, loading the published state_dicts with strict=True.

Every family's module returns, in inference mode, raw heads in this order:
  box deltas [B, N, 4], class probabilities [B, N, C] (softmax applied), landmark deltas [B, N, 2K]
(the last only where the recipe declares landmarks). Anchors/decoding live in toolchain.reference.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import FbtoolError
from ..recipe import Recipe

# family name -> module in this package exposing build(recipe) -> nn.Module
FAMILIES = {"retinaface": "retinaface", "ulfd": "ulfd", "facemesh": "facemesh"}


def build_model(recipe: Recipe, weights: str | Path | None = None):
    """Build the recipe's network in eval mode with verified weights loaded (strict=True)."""
    import importlib

    from ..weights import load_state_dict, resolve_weights

    if recipe.family not in FAMILIES:
        raise FbtoolError(f"recipe field 'family' names unknown family {recipe.family!r}",
                          f"known: {', '.join(sorted(FAMILIES))}")
    net = importlib.import_module(f"{__name__}.{FAMILIES[recipe.family]}").build(recipe)
    path = resolve_weights(recipe.weights, weights)
    state = load_state_dict(path)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise FbtoolError(f"weights {path.name} do not fit {recipe.family}/{recipe.variant}: {first[:160]}",
                          "check the recipe's family/variant against the weights file") from None
    return net.eval()
