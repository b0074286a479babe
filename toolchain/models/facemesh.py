"""MediaPipe FaceMesh (face_landmark.tflite, as converted to PyTorch by zmurez/MediaPipePyTorch), Apache-2.0.

Module names match the published state_dict keys (backbone1, backbone2a, backbone2b; BlazeBlocks with
.convs.0 depthwise, .convs.1 pointwise, .act PReLU). Facts from that repo (blazebase.py,
blazeface_landmark.py), re-written here:
- input: a 192x192 RGB face crop scaled to [0, 1] (x / 255, no mean), padded by one zero row/column at
  the bottom/right before the first stride-2 convolution (TFLite's SAME padding);
- a stride-2 BlazeBlock max-pools its shortcut and pads its depthwise input by 2 at the bottom/right;
  a block that widens pads the shortcut's channels with zeros;
- heads: 1404 = 468 x 3 landmark coordinates in crop pixels (x, y; z at the same scale), and one
  face-presence logit.
Outputs, in the recipe's order: presence probability [B, 1] (sigmoid applied, like the detectors'
softmax), landmarks [B, 468, 3] in crop pixels (0..192). The crop geometry (square, 1.5x the face box,
turned by the eye line) lives in toolchain.reference.contour.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import FbtoolError

NUM_LANDMARKS = 468


class BlazeBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.stride = stride
        self.channel_pad = cout - cin
        self.max_pool = nn.MaxPool2d(2, 2) if stride == 2 else None
        self.convs = nn.Sequential(
            nn.Conv2d(cin, cin, 3, stride, 0 if stride == 2 else 1, groups=cin),
            nn.Conv2d(cin, cout, 1),
        )
        self.act = nn.PReLU(cout)

    def forward(self, x):
        h = x
        if self.max_pool is not None:
            h = F.pad(x, (0, 2, 0, 2))
            x = self.max_pool(x)
        if self.channel_pad > 0:
            x = F.pad(x, (0, 0, 0, 0, 0, self.channel_pad))
        return self.act(self.convs(h) + x)


class FaceMesh(nn.Module):
    def __init__(self, resolution: int = 192):
        super().__init__()
        self.resolution = resolution
        chans = [(16, 16, 1), (16, 16, 1), (16, 32, 2), (32, 32, 1), (32, 32, 1), (32, 64, 2), (64, 64, 1),
                 (64, 64, 1), (64, 128, 2), (128, 128, 1), (128, 128, 1), (128, 128, 2), (128, 128, 1),
                 (128, 128, 1)]
        self.backbone1 = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 0), nn.PReLU(16),
                                       *[BlazeBlock(i, o, s) for i, o, s in chans])
        self.backbone2a = nn.Sequential(
            BlazeBlock(128, 128, 2), BlazeBlock(128, 128), BlazeBlock(128, 128),
            nn.Conv2d(128, 32, 1), nn.PReLU(32), BlazeBlock(32, 32), nn.Conv2d(32, NUM_LANDMARKS * 3, 3),
        )
        self.backbone2b = nn.Sequential(
            BlazeBlock(128, 128, 2), nn.Conv2d(128, 32, 1), nn.PReLU(32), BlazeBlock(32, 32), nn.Conv2d(32, 1, 3),
        )

    def forward(self, x):
        x = self.backbone1(F.pad(x, (0, 1, 0, 1)))
        landmarks = self.backbone2a(x).reshape(-1, NUM_LANDMARKS, 3)
        presence = torch.sigmoid(self.backbone2b(x).reshape(-1, 1))
        return presence, landmarks


def build(recipe) -> nn.Module:
    if recipe.variant != "mediapipe":
        raise FbtoolError(f"recipe field 'variant' {recipe.variant!r} is not built for family facemesh",
                          "known variants: mediapipe")
    if (recipe.input.width, recipe.input.height) != (192, 192) or recipe.input.dynamic_hw:
        raise FbtoolError("recipe field 'input' must be 192x192 (fixed) for family facemesh",
                          "FaceMesh's heads are sized for a 192x192 crop")
    if recipe.outputs.num_landmarks != NUM_LANDMARKS:
        raise FbtoolError(f"recipe field 'outputs.num_landmarks' must be {NUM_LANDMARKS} for family facemesh")
    return FaceMesh()
