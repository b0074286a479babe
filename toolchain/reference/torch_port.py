"""Pre- and post-processing in PyTorch, so the CUDA path never leaves the GPU between the frame
upload and the blurred frame's download.

- `letterbox_torch`: nvinfer's letterbox (bilinear, bottom/right or symmetric black padding) and
  y = scale * (x - mean), on a batch of uint8 NHWC frames.
- `postprocess_torch`: the reference chain (toolchain.reference.detections.postprocess) batched:
  threshold, stable score sort, pre-NMS top-k, decode (float64, like the reference), greedy NMS,
  top-k. Greedy NMS is solved as the fixed point of keep[j] = valid[j] and not any_{i<j} keep[i] and
  IoU(i, j) > t: the fixed point is unique and equals the sequential greedy result, and it is reached
  in a few batched steps instead of one Python step per box.
- `to_frame_torch`: the reference's way back from network to frame pixels (preprocess.to_frame).

Everything here runs on CPU tensors too: tests compare it with toolchain.reference on real frames.
"""

from __future__ import annotations

from dataclasses import dataclass

from .anchors import anchors_for
from .preprocess import Letterbox, letterbox_geometry


@dataclass
class TorchDetections:
    """Padded per-batch detections: rows where `keep` is False are not faces. Sorted best first."""

    boxes: object  # [B, K, 4] float32
    scores: object  # [B, K] float32
    landmarks: object | None  # [B, K, L, 2] float32
    keep: object  # [B, K] bool

    def to_numpy(self) -> list:
        """-> list of toolchain.reference Detections (one per frame), the reference's own type."""
        from .detections import Detections

        keep = self.keep.cpu().numpy()
        boxes, scores = self.boxes.cpu().numpy(), self.scores.cpu().numpy()
        lms = None if self.landmarks is None else self.landmarks.cpu().numpy()
        return [Detections(boxes[b][keep[b]], scores[b][keep[b]], None if lms is None else lms[b][keep[b]])
                for b in range(keep.shape[0])]


def geometry(recipe, frame_w: int, frame_h: int) -> Letterbox:
    p = recipe.preprocess
    return letterbox_geometry(frame_w, frame_h, recipe.input.width, recipe.input.height, p.letterbox,
                              p.symmetric_padding)


def letterbox_torch(frames, recipe, chunk: int = 8, dtype=None):
    """uint8 [B, H, W, 3] (BGR) -> network input [B, 3, net_h, net_w] (float32 unless dtype).

    Resizes `chunk` frames at a time through a float16 copy, so the temporary stays ~100 MB at 1080p.
    """
    import torch
    import torch.nn.functional as F

    b, h, w, _ = frames.shape
    p = recipe.preprocess
    lb = geometry(recipe, w, h)
    dtype = dtype or torch.float32
    # The mean is in the model's colour order (preprocess.normalize): flip the pixels, not the mean.
    # Per-channel fills with Python scalars: a torch.tensor(list, device=cuda) would be a host->device
    # copy from pageable memory, which waits for this stream (a hidden sync in a pipelined stage).
    canvas = torch.empty((b, 3, recipe.input.height, recipe.input.width), dtype=dtype, device=frames.device)
    for c in range(3):
        canvas[:, c] = -float(p.mean[c]) * p.scale  # black padding, normalised like every other pixel
    mode = "bilinear" if p.interpolation == "bilinear" else "nearest"
    half = torch.float16 if frames.is_cuda else torch.float32
    for s in range(0, b, chunk):
        x = frames[s:s + chunk].permute(0, 3, 1, 2).to(half)
        if p.color == "rgb":
            x = x.flip(1)
        if (lb.scaled_w, lb.scaled_h) != (w, h):
            x = F.interpolate(x, size=(lb.scaled_h, lb.scaled_w), mode=mode,
                              align_corners=False if mode == "bilinear" else None)
        dst = canvas[s:s + chunk, :, lb.pad_y:lb.pad_y + lb.scaled_h, lb.pad_x:lb.pad_x + lb.scaled_w]
        for c in range(3):
            dst[:, c] = (x[:, c].float() - float(p.mean[c])) * p.scale
    return canvas, lb


def anchors_torch(recipe, device, width: int | None = None, height: int | None = None):
    import torch

    return torch.from_numpy(anchors_for(recipe, width, height)).to(device=device, dtype=torch.float64)


def _iou(boxes):
    """[B, K, 4] -> [B, K, K] IoU in float64 (the reference computes IoU in float64 too)."""
    import torch

    a = boxes.double()
    lt = torch.maximum(a[:, :, None, :2], a[:, None, :, :2])
    rb = torch.minimum(a[:, :, None, 2:], a[:, None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    union = area[:, :, None] + area[:, None, :] - inter
    return torch.where(union > 0, inter / torch.where(union > 0, union, torch.ones_like(union)),
                       torch.zeros_like(union))


def greedy_nms(boxes, valid, iou_threshold: float, top_k: int = -1, check_every: int = 4):
    """Batched greedy NMS over score-sorted rows: [B, K, 4], [B, K] bool -> keep [B, K] bool."""
    import torch

    k = boxes.shape[1]
    if k == 0:
        return valid.clone()
    earlier = torch.ones((k, k), dtype=torch.bool, device=boxes.device).triu(1)  # i < j
    sup = (_iou(boxes) > iou_threshold) & earlier & valid[:, :, None] & valid[:, None, :]
    keep = valid.clone()
    for step in range(k):
        new = valid & ~(sup & keep[:, :, None]).any(1)
        if (step + 1) % check_every == 0 or step == k - 1:
            if torch.equal(new, keep):
                break
        keep = new
    if top_k > 0:
        keep &= keep.cumsum(1) <= top_k
    return keep


def postprocess_torch(outputs: dict, recipe, anchors, width: int | None = None, height: int | None = None,
                      score_threshold: float | None = None) -> TorchDetections:
    """Raw heads {loc [B,N,4], conf [B,N,C], landmarks [B,N,2L]} -> detections in network pixels."""
    import torch

    width = width or recipe.input.width
    height = height or recipe.input.height
    o, t = recipe.outputs, recipe.thresholds
    thr = t.score if score_threshold is None else score_threshold
    loc = outputs[o.boxes]
    probs = outputs[o.scores]
    scores = probs[..., 1] if probs.shape[-1] > 1 else probs[..., 0]
    b, n = scores.shape
    if anchors.shape[0] != n:
        raise ValueError(f"{n} box rows but {anchors.shape[0]} anchors for {width}x{height}")
    above = scores > thr
    kc = min(int(above.sum(1).max().item()) if n else 0, t.pre_nms_top_k)  # one sync per batch
    masked = torch.where(above, scores, torch.full_like(scores, float("-inf")))
    vals, idx = torch.sort(masked, dim=1, descending=True, stable=True)
    vals, idx = vals[:, :kc], idx[:, :kc]
    valid = torch.isfinite(vals)
    a = anchors[idx]  # [B, kc, 4] float64
    var0, var1 = recipe.anchors.variance
    d = torch.gather(loc, 1, idx[..., None].expand(-1, -1, 4)).double()
    c = a[..., :2] + d[..., :2] * var0 * a[..., 2:]
    wh = a[..., 2:] * torch.exp(d[..., 2:] * var1)
    scale = torch.ones(2, dtype=torch.float64, device=loc.device)  # no host->device copy (see letterbox)
    scale[0], scale[1] = float(width), float(height)
    boxes = (torch.cat([c - wh / 2, c + wh / 2], -1) * scale.repeat(2)).float()
    lms = None
    if recipe.has_landmarks and o.landmarks in outputs:
        raw = outputs[o.landmarks]
        nl = raw.shape[-1] // 2
        ldm = torch.gather(raw, 1, idx[..., None].expand(-1, -1, raw.shape[-1])).double().reshape(b, kc, nl, 2)
        lms = ((a[:, :, None, :2] + ldm * var0 * a[:, :, None, 2:]) * scale).float()
    keep = greedy_nms(boxes, valid, t.nms_iou, t.top_k)
    return TorchDetections(boxes, torch.where(valid, vals, torch.zeros_like(vals)), lms, keep)


def to_frame_torch(dets: TorchDetections, lb: Letterbox) -> TorchDetections:
    """Network pixels -> frame pixels, boxes clipped to the frame (preprocess.to_frame, batched)."""

    b = dets.boxes.double().clone()
    b[..., 0::2] = ((b[..., 0::2] - lb.pad_x) / lb.sx).clamp(0, lb.frame_w)
    b[..., 1::2] = ((b[..., 1::2] - lb.pad_y) / lb.sy).clamp(0, lb.frame_h)
    lms = None
    if dets.landmarks is not None:
        lms = dets.landmarks.double().clone()
        lms[..., 0] = (lms[..., 0] - lb.pad_x) / lb.sx
        lms[..., 1] = (lms[..., 1] - lb.pad_y) / lb.sy
        lms = lms.float()
    b = b.float()
    return TorchDetections(b, dets.scores, lms, dets.keep)
