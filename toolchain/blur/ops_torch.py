"""The face blur in PyTorch (CUDA, or CPU for tests): the same blur as ops_cpu, batched.

Per batch: frames with faces are box-averaged by their k (tiny: 1/k^2 of the frame; frames that
share k are done together). Each face then gets a P x P crop (P covers the largest face's mask
reach plus the box filter's); in it we evaluate the reference mask formula (toolchain.reference.masks:
ellipse turned by the eye line, soft edge) for every face of the same frame and take the maximum
(the union, as frame_mask does), sample the pooled image with the bilinear grid OpenCV's resize
uses, box-filter it, blend, and write the crop back in place. Only face pixels are read or written,
so the cost follows the faces, and memory stays a few MB whatever the frame size.
"""

from __future__ import annotations

import math

from .ops_cpu import BLOCKS_PER_FACE, MIN_K


def ellipse_params_torch(boxes, landmarks, max_tilt_deg: float):
    """[..., 4] boxes (+ [..., L, 2] landmarks) -> [..., 5] (cx, cy, a, b, tilt), as masks.ellipse_params."""
    import torch

    bx = boxes.double()
    cx, cy = (bx[..., 0] + bx[..., 2]) / 2, (bx[..., 1] + bx[..., 3]) / 2
    a, b = (bx[..., 2] - bx[..., 0]) / 2, (bx[..., 3] - bx[..., 1]) / 2
    tilt = torch.zeros_like(cx)
    if landmarks is not None:
        lm = landmarks.double()
        dx, dy = lm[..., 1, 0] - lm[..., 0, 0], lm[..., 1, 1] - lm[..., 0, 1]
        flip = dx < 0  # eyes right-to-left: the line's angle, not its direction
        dx, dy = torch.where(flip, -dx, dx), torch.where(flip, -dy, dy)
        lim = math.radians(max_tilt_deg)
        tilt = torch.atan2(dy, dx).clamp(-lim, lim)  # atan2(0, 0) = 0, as the reference's guard
    return torch.stack([cx, cy, a, b, tilt], -1)


def pooled(frames, rows: list[int], k: int):
    """uint8 [B, H, W, 3] frames[rows] -> float32 [n, 3, ceil(H/k), ceil(W/k)] box averages (INTER_AREA by k)."""
    import torch
    import torch.nn.functional as F

    work = torch.float16 if frames.is_cuda else torch.float32  # halves the temporary at 1080p
    outs = [F.avg_pool2d(frames[r].permute(2, 0, 1)[None].to(work), k, k, ceil_mode=True).float() for r in rows]
    return torch.cat(outs)


def box_filter(x, size: int):
    """Mean over a size x size window (size odd) of [N, C, H, W], edges averaging the valid pixels only.

    Integral-image form: O(1) per pixel whatever the size (k reaches ~100 px at 1080p), like cv2.blur.
    """
    import torch
    import torch.nn.functional as F

    r = size // 2

    def along(t, dim):
        n = t.shape[dim]
        c = torch.cumsum(t, dim)
        c = F.pad(c, (1, 0) if dim == 3 else (0, 0, 1, 0))  # leading zero
        idx = torch.arange(n, device=t.device)
        lo, hi = (idx - r).clamp(0, n), (idx + r + 1).clamp(0, n)
        shape = [1, 1, 1, 1]
        shape[dim] = n
        s = c.index_select(dim, hi) - c.index_select(dim, lo)
        return s / (hi - lo).to(t.dtype).view(shape)

    return along(along(x, 3), 2)


def frame_factors(dets):
    """Per frame: k from its largest kept face (ops_cpu.blur_factor), as a host list; 0 = no face."""
    import torch

    b = dets.boxes.double()
    side = torch.minimum(b[..., 2] - b[..., 0], b[..., 3] - b[..., 1])
    side = torch.where(dets.keep, side, torch.full_like(side, -1.0)).amax(1) if side.shape[1] else \
        torch.full(side.shape[:1], -1.0, dtype=side.dtype, device=side.device)
    ks = torch.clamp(torch.round(side / BLOCKS_PER_FACE), min=MIN_K)
    return [int(k) if s >= 0 else 0 for k, s in zip(ks.tolist(), side.tolist())]


def blur_batch(frames, dets, feather: float = 0.15, max_tilt_deg: float = 45.0, max_elems: int = 1 << 23) -> int:
    """Blur the kept faces of `dets` (frame pixels) into `frames` (uint8 [B, H, W, 3]) in place.

    Returns the number of faces blurred. `max_elems` bounds the union-mask temporaries (floats).
    """
    import torch

    # Compact each frame's kept faces to the front: K drops from the pre-NMS candidate count (tens)
    # to the most faces in one frame, which sets the size of the union-mask work below.
    order = torch.argsort((~dets.keep).to(torch.uint8), dim=1, stable=True)
    kf = int(dets.keep.sum(1).max().item()) if dets.keep.numel() else 0
    order = order[:, :kf]
    keep = torch.gather(dets.keep, 1, order)
    params = ellipse_params_torch(dets.boxes, dets.landmarks, max_tilt_deg)  # [B, K, 5] float64
    params = torch.gather(params, 1, order[..., None].expand(-1, -1, 5))
    ks = frame_factors(dets)  # one sync: k and the face count set the work's shape
    done = 0
    for k in sorted(set(ks) - {0}):
        rows = [i for i, v in enumerate(ks) if v == k]
        small = pooled(frames, rows, k)
        local = torch.full((frames.shape[0],), -1, dtype=torch.long, device=frames.device)
        for j, row in enumerate(rows):  # scalar writes: a list index would be a pageable host->device copy
            local[row] = j
        sel = keep & (local >= 0)[:, None]
        fb, fk = torch.nonzero(sel, as_tuple=True)
        done += _blur_faces(frames, small, local, params, keep, fb, fk, k, feather, max_elems)
    return done


def _blur_faces(frames, small, local, params, keep, fb, fk, k: int, feather: float, max_elems: int) -> int:
    import torch
    import torch.nn.functional as F

    _, h, w, _ = frames.shape
    dev = frames.device
    n = int(fb.shape[0])
    if n == 0:
        return 0
    face = params[fb, fk]
    box = k | 1
    reach = (1.0 + feather) * torch.maximum(face[:, 2], face[:, 3]) + 1 + box  # + the box filter's reach
    p = int(math.ceil(2 * float(reach.max().item()) + 2))
    p = max(16, -(-p // 16) * 16)  # a few sizes only: the allocator reuses blocks
    ar = torch.arange(p, device=dev)
    ox = torch.floor(face[:, 0] - p / 2).long()
    oy = torch.floor(face[:, 1] - p / 2).long()
    kmax = keep.shape[1]
    per = max(1, max_elems // max(kmax * p * p, 1))
    sh, sw = small.shape[-2:]
    # Crops of one chunk are all read before any is written back; past `per` faces (hundreds) a later
    # chunk may read pixels an earlier one blurred where crops overlap: blurred twice, never left sharp.
    for s in range(0, n, per):
        sl = slice(s, s + per)
        xs = (ox[sl, None] + ar).clamp(0, w - 1)  # [F, P]
        ys = (oy[sl, None] + ar).clamp(0, h - 1)
        # Union mask: every face of this crop's frame, at pixel centres, as rasterize_mask/frame_mask.
        prm = params[fb[sl]].float()  # [F, K, 5]
        valid = keep[fb[sl]]
        px = (xs.float() + 0.5)[:, None, None, :] - prm[..., 0, None, None]
        py = (ys.float() + 0.5)[:, None, :, None] - prm[..., 1, None, None]
        c, sn = torch.cos(prm[..., 4])[..., None, None], torch.sin(prm[..., 4])[..., None, None]
        u, v = c * px + sn * py, -sn * px + c * py
        a = prm[..., 2, None, None].clamp(min=1e-12)
        b = prm[..., 3, None, None].clamp(min=1e-12)
        r = torch.sqrt((u / a) ** 2 + (v / b) ** 2)
        m = (0.5 + (1.0 - r) / (2.0 * feather)).clamp(0, 1)
        ok = valid & (prm[..., 2] > 0) & (prm[..., 3] > 0)
        m = torch.where(ok[..., None, None], m, torch.zeros_like(m)).amax(1)  # [F, P, P]
        # Blurred pixels: bilinear from the k-pooled image at (x + 0.5) / k - 0.5 (OpenCV's resize),
        # then the k-wide box filter, as ops_cpu.blurred_region.
        gx = (2.0 * ((xs.float() + 0.5) / k) / sw - 1.0)[:, None, :].expand(-1, p, -1)
        gy = (2.0 * ((ys.float() + 0.5) / k) / sh - 1.0)[:, :, None].expand(-1, -1, p)
        up = F.grid_sample(small[local[fb[sl]]], torch.stack([gx, gy], -1), mode="bilinear",
                           padding_mode="border", align_corners=False)
        blurred = box_filter(up, box).permute(0, 2, 3, 1)  # [F, P, P, 3]
        bi = fb[sl][:, None, None].expand(-1, p, p)
        yi, xi = ys[:, :, None].expand(-1, -1, p), xs[:, None, :].expand(-1, p, -1)
        sharp = frames[bi, yi, xi].float()
        out = sharp + m[..., None] * (blurred - sharp)
        frames[bi, yi, xi] = (out + 0.5).clamp(0, 255).to(torch.uint8)
    return n
