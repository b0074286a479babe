"""RetinaFace (biubug6/Face-Detector-1MB-with-landmark), MobileNet-0.25 backbone, FPN + SSH, 3 heads.

Module names match the published state_dict keys. This checkpoint uses plain ReLU everywhere
(the original RetinaFace code's LeakyReLU(0.1) gives wrong scores with these weights).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import FbtoolError


def conv_bn(inp: int, oup: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup), nn.ReLU(inplace=True))


def conv_bn_no_relu(inp: int, oup: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, oup, 3, 1, 1, bias=False), nn.BatchNorm2d(oup))


def conv_bn1x1(inp: int, oup: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup), nn.ReLU(inplace=True))


def conv_dw(inp: int, oup: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), nn.BatchNorm2d(inp), nn.ReLU(inplace=True),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup), nn.ReLU(inplace=True),
    )


class MobileNetV1(nn.Module):
    def __init__(self):
        super().__init__()
        self.stage1 = nn.Sequential(
            conv_bn(3, 8, 2), conv_dw(8, 16, 1), conv_dw(16, 32, 2), conv_dw(32, 32, 1),
            conv_dw(32, 64, 2), conv_dw(64, 64, 1),
        )
        self.stage2 = nn.Sequential(conv_dw(64, 128, 2), *[conv_dw(128, 128, 1) for _ in range(5)])
        self.stage3 = nn.Sequential(conv_dw(128, 256, 2), conv_dw(256, 256, 1))

    def forward(self, x):
        c1 = self.stage1(x)
        c2 = self.stage2(c1)
        c3 = self.stage3(c2)
        return [c1, c2, c3]


class FPN(nn.Module):
    def __init__(self, in_channels: list[int], out_channels: int):
        super().__init__()
        self.output1 = conv_bn1x1(in_channels[0], out_channels)
        self.output2 = conv_bn1x1(in_channels[1], out_channels)
        self.output3 = conv_bn1x1(in_channels[2], out_channels)
        self.merge1 = conv_bn(out_channels, out_channels)
        self.merge2 = conv_bn(out_channels, out_channels)

    def forward(self, feats):
        o1, o2, o3 = self.output1(feats[0]), self.output2(feats[1]), self.output3(feats[2])
        # scale_factor (not size) keeps the ONNX free of Shape/Gather chains: inputs are multiples of 32.
        o2 = self.merge2(o2 + F.interpolate(o3, scale_factor=2.0, mode="nearest"))
        o1 = self.merge1(o1 + F.interpolate(o2, scale_factor=2.0, mode="nearest"))
        return [o1, o2, o3]


class SSH(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv3X3 = conv_bn_no_relu(cin, cout // 2)
        self.conv5X5_1 = conv_bn(cin, cout // 4)
        self.conv5X5_2 = conv_bn_no_relu(cout // 4, cout // 4)
        self.conv7X7_2 = conv_bn(cout // 4, cout // 4)
        self.conv7x7_3 = conv_bn_no_relu(cout // 4, cout // 4)

    def forward(self, x):
        c3 = self.conv3X3(x)
        c5_1 = self.conv5X5_1(x)
        c5 = self.conv5X5_2(c5_1)
        c7 = self.conv7x7_3(self.conv7X7_2(c5_1))
        return F.relu(torch.cat([c3, c5, c7], dim=1))


class Head(nn.Module):
    def __init__(self, cin: int, num_anchors: int, width: int):
        super().__init__()
        self.width = width
        self.conv1x1 = nn.Conv2d(cin, num_anchors * width, 1)

    def forward(self, x):
        out = self.conv1x1(x).permute(0, 2, 3, 1)
        return out.reshape(out.shape[0], -1, self.width)


class RetinaFace(nn.Module):
    def __init__(self, num_anchors: int = 2, out_channels: int = 64, num_classes: int = 2):
        super().__init__()
        self.body = MobileNetV1()
        self.fpn = FPN([64, 128, 256], out_channels)
        self.ssh1, self.ssh2, self.ssh3 = (SSH(out_channels, out_channels) for _ in range(3))
        self.ClassHead = nn.ModuleList(Head(out_channels, num_anchors, num_classes) for _ in range(3))
        self.BboxHead = nn.ModuleList(Head(out_channels, num_anchors, 4) for _ in range(3))
        self.LandmarkHead = nn.ModuleList(Head(out_channels, num_anchors, 10) for _ in range(3))

    def forward(self, x):
        fpn = self.fpn(self.body(x))
        feats = [self.ssh1(fpn[0]), self.ssh2(fpn[1]), self.ssh3(fpn[2])]
        loc = torch.cat([h(f) for h, f in zip(self.BboxHead, feats)], dim=1)
        logits = torch.cat([h(f) for h, f in zip(self.ClassHead, feats)], dim=1)
        ldm = torch.cat([h(f) for h, f in zip(self.LandmarkHead, feats)], dim=1)
        return loc, F.softmax(logits, dim=-1), ldm


def build(recipe) -> nn.Module:
    if recipe.variant != "mnet025":
        raise FbtoolError(f"recipe field 'variant' {recipe.variant!r} is not built for family retinaface",
                          "known variants: mnet025")
    num_anchors = len(recipe.anchors.min_sizes[0])
    return RetinaFace(num_anchors=num_anchors, num_classes=len(recipe.labels) + 1)
