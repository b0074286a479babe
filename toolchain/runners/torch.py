"""The PyTorch reference runner (fp32): the ground truth every other runtime is compared with."""

from __future__ import annotations

import numpy as np

from ..recipe import Recipe


class TorchRunner:
    def __init__(self, recipe: Recipe, weights=None, device: str = "cpu", model=None):
        import torch

        from ..models import build_model

        self.name = f"torch-{device}"
        self.recipe = recipe
        self.device = torch.device(device)
        self.model = (model or build_model(recipe, weights)).to(self.device)
        self.input_name = recipe.input.name
        self.output_names = recipe.outputs.names

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            import torch  # noqa: F401
        except Exception as exc:  # pragma: no cover
            return False, f"torch does not import: {exc}"
        return True, "ok"

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(feed[self.input_name])).to(self.device)
        with torch.inference_mode():
            outs = self.model(x)
        return {n: t.float().cpu().numpy() for n, t in zip(self.output_names, outs)}
