"""Conv + BatchNorm folded into one conv, for the CUDA engine (both precisions).

Why: in fp16 the RetinaFace recipe lost its boxes. It feeds raw pixels minus the mean (no scaling) to
conv + BatchNorm: the conv's outputs are large and BatchNorm subtracts a large mean from them, so the
fp16 rounding of the conv output became most of the signal. Measured on the CPU (this machine, 4 real
frames, heads vs fp32): model.half() 94% relative error on loc, 83% on landmarks, boxes 8-23 px off at
1080p and the face order changed; folded first, then half: 1.0% / 1.0%, the same 32 faces as fp32 on 16
frames at 1080p, box error p50 0.04 px. In fp32 folding changes nothing (relative error 0.0 on the same
frames) and drops ~47 BatchNorm kernels per batch.
"""

from __future__ import annotations


def fuse_conv_bn(model):
    """Fold every BatchNorm2d that directly follows a Conv2d in an nn.Sequential into that conv (eval)."""
    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for mod in model.modules():
        if not isinstance(mod, torch.nn.Sequential):
            continue
        names = list(mod._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = mod._modules[a], mod._modules[b]
            if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                mod._modules[a] = fuse_conv_bn_eval(conv, bn)
                mod._modules[b] = torch.nn.Identity()
    return model


def _fp32(module):
    """`module` in fp32 on an fp16 input (the input is upcast; the output stays fp32)."""
    import torch

    class Fp32(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.module = m.float()

        def forward(self, x):
            return self.module(x.float())

    return Fp32(module)


HEADS = ("ClassHead", "BboxHead", "LandmarkHead")


def heads_fp32(model):
    """The detection heads (RetinaFace's 1x1 convs; the softmax after them) in fp32 on an fp16 body.

    Why: in fp16 a score near 1 has steps of 2^-11 (~0.0005), so two overlapping candidates of one face
    can round to the same score; the stable sort then keeps the earlier anchor where fp32 keeps the
    better one, and NMS keeps the other box (the 13.7 px case measured on the H200, docs/bench.md).
    The heads are three 1x1 convs per level: fp32 costs almost nothing. Other families: unchanged."""
    import torch

    for name in HEADS:
        heads = getattr(model, name, None)
        if isinstance(heads, torch.nn.ModuleList):
            for i, h in enumerate(heads):
                if type(h).__name__ != "Fp32":
                    heads[i] = _fp32(h)
    return model
