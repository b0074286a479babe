"""Ultra-Light-Fast-Generic-Face-Detector-1MB (Linzaer), RFB variant: Mb_Tiny_RFB backbone + SSD heads.

Module names match the published state_dict keys (base_net.N, extras, classification_headers,
regression_headers). Facts from the original repo (vision/nn/mb_tiny_RFB.py, vision/ssd/mb_tiny_RFB_fd.py,
vision/ssd/ssd.py, vision/ssd/config/fd_config.py), re-written here:
- backbone: MobileNet-style conv_bn / conv_dw blocks (ReLU after every BN) with one receptive-field
  block (BasicRFB, scale 1.0) at index 7; heads read base_net outputs after blocks 8, 11 and 13
  (strides 8, 16, 32) and after one extra block (stride 64);
- heads: depthwise 3x3 -> ReLU -> pointwise 1x1 (no activation after it), the last level a plain 3x3;
- per level, rows over height, columns over width, then the level's min boxes: the same order as
  toolchain.reference.anchors, so no permutation is needed.
Boxes only: outputs are (box deltas [B,N,4], softmax probabilities [B,N,2]).

Anchor centres. The original priors put level l's centres at ((i+0.5)/fw, (j+0.5)/fh) over its
feature map, toolchain.reference puts them at ((i+0.5)*step/W, (j+0.5)*step/H). The two agree
wherever W and H are multiples of the step; at 640x480 the stride-64 level (8 rows over 480 px)
differs by up to 30 px. Rather than teach every decoder (reference, decode-in-graph, C++ parser) a
second centre rule, the model adds a constant per-anchor offset to its centre deltas so that the
project's decode of its output equals the original decode with the original priors. The offset is
zero wherever the two rules agree.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import FbtoolError


def conv_bn(inp: int, oup: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup), nn.ReLU(inplace=True))


def conv_dw(inp: int, oup: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), nn.BatchNorm2d(inp), nn.ReLU(inplace=True),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup), nn.ReLU(inplace=True),
    )


class BasicConv(nn.Module):
    """Conv (no bias) + BN, optional ReLU: keys .conv / .bn as in the checkpoint."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1,
                 relu: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, dilation=dilation, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5)
        self.relu = nn.ReLU(inplace=True) if relu else None

    def forward(self, x):
        x = self.bn(self.conv(x))
        return self.relu(x) if self.relu is not None else x


class BasicRFB(nn.Module):
    """Three dilated branches (2, 3, 5), concatenated, projected, plus a projected shortcut, then ReLU."""

    def __init__(self, cin: int, cout: int, scale: float = 1.0, map_reduce: int = 8, vision: int = 1):
        super().__init__()
        self.scale = scale
        m = cin // map_reduce
        self.branch0 = nn.Sequential(
            BasicConv(cin, m, 1, relu=False),
            BasicConv(m, 2 * m, 3, padding=1),
            BasicConv(2 * m, 2 * m, 3, padding=vision + 1, dilation=vision + 1, relu=False),
        )
        self.branch1 = nn.Sequential(
            BasicConv(cin, m, 1, relu=False),
            BasicConv(m, 2 * m, 3, padding=1),
            BasicConv(2 * m, 2 * m, 3, padding=vision + 2, dilation=vision + 2, relu=False),
        )
        self.branch2 = nn.Sequential(
            BasicConv(cin, m, 1, relu=False),
            BasicConv(m, (m // 2) * 3, 3, padding=1),
            BasicConv((m // 2) * 3, 2 * m, 3, padding=1),
            BasicConv(2 * m, 2 * m, 3, padding=vision + 4, dilation=vision + 4, relu=False),
        )
        self.ConvLinear = BasicConv(6 * m, cout, 1, relu=False)
        self.shortcut = BasicConv(cin, cout, 1, relu=False)

    def forward(self, x):
        out = self.ConvLinear(torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], dim=1))
        if self.scale != 1.0:  # this checkpoint uses 1.0: no Mul node in the exported graph
            out = out * self.scale
        return F.relu(out + self.shortcut(x))


def separable(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """Depthwise 3x3 (bias) -> ReLU -> pointwise 1x1 (bias); keys .0 and .2."""
    return nn.Sequential(nn.Conv2d(cin, cin, 3, stride, 1, groups=cin), nn.ReLU(),
                         nn.Conv2d(cin, cout, 1))


def mb_tiny_rfb(base: int = 16) -> nn.Sequential:
    return nn.Sequential(
        conv_bn(3, base, 2),
        conv_dw(base, base * 2, 1),
        conv_dw(base * 2, base * 2, 2),
        conv_dw(base * 2, base * 2, 1),
        conv_dw(base * 2, base * 4, 2),
        conv_dw(base * 4, base * 4, 1),
        conv_dw(base * 4, base * 4, 1),
        BasicRFB(base * 4, base * 4, scale=1.0),
        conv_dw(base * 4, base * 8, 2),  # 8 -> first head (stride 8) reads before this block
        conv_dw(base * 8, base * 8, 1),
        conv_dw(base * 8, base * 8, 1),
        conv_dw(base * 8, base * 16, 2),  # 11 -> second head (stride 16) reads before this block
        conv_dw(base * 16, base * 16, 1),
    )


def center_offsets(width: int, height: int, steps, min_sizes, variance, clip: bool) -> list[np.ndarray | None]:
    """Per level, [rows, 4] float32 added to the raw deltas (None where all zero): the original priors'
    centres re-expressed against the project's anchors (toolchain.reference.anchors), in delta units."""
    from ..reference.anchors import feature_maps, make_anchors

    out: list[np.ndarray | None] = []
    for (fh, fw), step, sizes in zip(feature_maps(width, height, steps), steps, min_sizes):
        ours = make_anchors(width, height, [step], [sizes], clip).astype(np.float64)
        jj, ii = np.meshgrid(np.arange(fh, dtype=np.float64), np.arange(fw, dtype=np.float64), indexing="ij")
        centres = np.repeat(np.stack([(ii.ravel() + 0.5) / fw, (jj.ravel() + 0.5) / fh], axis=1), len(sizes), 0)
        if clip:
            centres = np.clip(centres, 0.0, 1.0)
        diff = centres - ours[:, :2]
        diff[np.abs(diff) < 1e-6] = 0.0  # float32 rounding of the anchors, not a different rule
        if not diff.any():
            out.append(None)
            continue
        # Sizes are identical under both rules (min_size / W, min_size / H, same clipping), so only the
        # centre term of the decode needs correcting: a_c + (d + off) v0 a_wh == p_c + d v0 a_wh.
        off = np.zeros_like(ours)
        off[:, :2] = diff / (variance[0] * ours[:, 2:])
        out.append(off.astype(np.float32))
    return out


class ULFD(nn.Module):
    def __init__(self, anchors_per_level=(3, 2, 2, 3), num_classes: int = 2, base: int = 16,
                 offsets: list[np.ndarray | None] | None = None):
        super().__init__()
        self.num_classes = num_classes
        self.base_net = mb_tiny_rfb(base)
        self.extras = nn.ModuleList([nn.Sequential(
            nn.Conv2d(base * 16, base * 4, 1), nn.ReLU(),
            separable(base * 4, base * 16, stride=2), nn.ReLU(),
        )])
        chans = (base * 4, base * 8, base * 16)
        k = anchors_per_level
        self.classification_headers = nn.ModuleList(
            [separable(c, n * num_classes) for c, n in zip(chans, k)]
            + [nn.Conv2d(base * 16, k[3] * num_classes, 3, padding=1)])
        self.regression_headers = nn.ModuleList(
            [separable(c, n * 4) for c, n in zip(chans, k)] + [nn.Conv2d(base * 16, k[3] * 4, 3, padding=1)])
        # One buffer per level, None where the centre rules agree (at 640x480 only the stride-64 level
        # has one: 240 x 4 values in the graph). Not in the checkpoint: persistent=False keeps strict loading exact.
        offsets = offsets or [None] * 4
        for level, off in enumerate(offsets):
            self.register_buffer(f"center_offsets_{level}", None if off is None else torch.from_numpy(off)[None],
                                 persistent=False)

    @staticmethod
    def _flat(t, width: int):
        t = t.permute(0, 2, 3, 1)
        return t.reshape(t.shape[0], -1, width)

    def forward(self, x):
        feats = []
        for start, end in ((0, 8), (8, 11), (11, 13)):
            for layer in self.base_net[start:end]:
                x = layer(x)
            feats.append(x)
        for layer in self.extras:
            x = layer(x)
            feats.append(x)
        locs = []
        for level, (h, f) in enumerate(zip(self.regression_headers, feats)):
            d = self._flat(h(f), 4)
            off = getattr(self, f"center_offsets_{level}")
            locs.append(d if off is None else d + off)
        loc = torch.cat(locs, dim=1)
        logits = torch.cat([self._flat(h(f), self.num_classes) for h, f in zip(self.classification_headers, feats)],
                           dim=1)
        return loc, F.softmax(logits, dim=-1)


def build(recipe) -> nn.Module:
    if recipe.variant != "rfb640":
        raise FbtoolError(f"recipe field 'variant' {recipe.variant!r} is not built for family ulfd",
                          "known variants: rfb640")
    a = recipe.anchors
    if len(a.steps) != 4:
        raise FbtoolError(f"recipe field 'anchors.steps' has {len(a.steps)} levels; ulfd has 4 heads",
                          "use steps [8, 16, 32, 64]")
    if recipe.input.dynamic_hw:
        raise FbtoolError("recipe field 'input.dynamic_hw' must be false for family ulfd",
                          "its anchor-centre correction is computed for the recipe's input size")
    offsets = center_offsets(recipe.input.width, recipe.input.height, a.steps, a.min_sizes, a.variance, a.clip)
    return ULFD(tuple(len(s) for s in a.min_sizes), num_classes=len(recipe.labels) + 1, offsets=offsets)
