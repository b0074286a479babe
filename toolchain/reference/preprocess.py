"""The reference preprocessing (nvinfer's steps), and the way back to frame coordinates.

As nvinfer: scale the frame to the network size (keeping the aspect ratio when maintain-aspect-ratio=1,
padding bottom/right, or both sides when symmetric-padding=1, with black), convert the colour order,
then apply y = net-scale-factor * (x - offset[c]) to every pixel, padding included.
The letterbox size is rounded here; gst-nvinfer rounds the source to even dimensions and truncates.
Both agree for the even-sized frames with integral scaled sizes this project uses (16:9, 4:3); where
they differ, nvinfer's own geometry is toolchain.nvinfer.emulation.nvinfer_letterbox, which the
emulation (and so validate's nvinfer candidate) follows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Letterbox:
    """How one frame was placed in the network input."""

    frame_w: int
    frame_h: int
    scaled_w: int
    scaled_h: int
    pad_x: int
    pad_y: int

    @property
    def sx(self) -> float:
        return self.scaled_w / self.frame_w

    @property
    def sy(self) -> float:
        return self.scaled_h / self.frame_h


def letterbox_geometry(frame_w: int, frame_h: int, net_w: int, net_h: int, keep_aspect: bool = True,
                       symmetric: bool = False) -> Letterbox:
    if not keep_aspect:
        return Letterbox(frame_w, frame_h, net_w, net_h, 0, 0)
    ratio = min(net_w / frame_w, net_h / frame_h)
    sw = min(net_w, max(1, int(round(frame_w * ratio))))
    sh = min(net_h, max(1, int(round(frame_h * ratio))))
    px, py = ((net_w - sw) // 2, (net_h - sh) // 2) if symmetric else (0, 0)
    return Letterbox(frame_w, frame_h, sw, sh, px, py)


def scale_frame(frame: np.ndarray, net_w: int, net_h: int, keep_aspect: bool = True, symmetric: bool = False,
                interpolation: str = "bilinear") -> tuple[np.ndarray, Letterbox]:
    """Frame (H, W, 3 uint8) -> network-size uint8 canvas with black padding."""
    import cv2

    h, w = frame.shape[:2]
    lb = letterbox_geometry(w, h, net_w, net_h, keep_aspect, symmetric)
    interp = cv2.INTER_LINEAR if interpolation == "bilinear" else cv2.INTER_NEAREST
    scaled = frame if (lb.scaled_w, lb.scaled_h) == (w, h) else cv2.resize(frame, (lb.scaled_w, lb.scaled_h),
                                                                           interpolation=interp)
    canvas = np.zeros((net_h, net_w, 3), dtype=np.uint8)
    canvas[lb.pad_y:lb.pad_y + lb.scaled_h, lb.pad_x:lb.pad_x + lb.scaled_w] = scaled
    return canvas, lb


def normalize(canvas_bgr: np.ndarray, color: str, mean, scale: float) -> np.ndarray:
    """uint8 HWC BGR canvas -> float32 CHW tensor, y = scale * (x - mean[c]) in the model's colour order."""
    img = canvas_bgr[:, :, ::-1] if color == "rgb" else canvas_bgr
    x = img.astype(np.float32)
    x -= np.asarray(mean, dtype=np.float32)
    if scale != 1.0:
        x *= np.float32(scale)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess(frame: np.ndarray, recipe) -> tuple[np.ndarray, Letterbox]:
    """One BGR frame -> ([3, H, W] float32, letterbox) following the recipe."""
    p = recipe.preprocess
    canvas, lb = scale_frame(frame, recipe.input.width, recipe.input.height, p.letterbox, p.symmetric_padding,
                             p.interpolation)
    return normalize(canvas, p.color, p.mean, p.scale), lb


def preprocess_batch(frames, recipe) -> tuple[np.ndarray, list[Letterbox]]:
    tensors, boxes = zip(*(preprocess(f, recipe) for f in frames))
    return np.stack(tensors), list(boxes)


def to_frame(dets, lb: Letterbox):
    """Map Detections from network-input pixels back to the frame and clip them to it: the reference's
    own convention. nvinfer differs (gstnvinfer_meta_utils.cpp, attach_metadata_detector): it clamps a
    negative left/top to 0 without shrinking the box, and DROPS a box that passes the bottom edge
    unless crop-objects-to-roi-boundary=1 (which fbtool's config sets: then it crops at the right and
    bottom edges like this clip). toolchain.nvinfer.emulation follows nvinfer. The unclipped boxes stay
    in `full_boxes`: a cut face's contour is its whole ellipse, cut at the edge (as the parser makes it)."""
    from .detections import Detections

    b = dets.boxes.astype(np.float64).copy()
    b[:, [0, 2]] = (b[:, [0, 2]] - lb.pad_x) / lb.sx
    b[:, [1, 3]] = (b[:, [1, 3]] - lb.pad_y) / lb.sy
    full = b.copy()
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, lb.frame_w)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, lb.frame_h)
    lms = None
    if dets.landmarks is not None:
        lms = dets.landmarks.astype(np.float64).copy()
        lms[..., 0] = (lms[..., 0] - lb.pad_x) / lb.sx
        lms[..., 1] = (lms[..., 1] - lb.pad_y) / lb.sy
    return Detections(b, dets.scores, lms, dets.classes, full)
