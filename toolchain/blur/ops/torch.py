"""The face blur in PyTorch (CUDA, or CPU for tests): the same blur as ops.cpu, batched.

Per batch: each frame with faces is box-averaged by its own k (tiny: 1/k^2 of the frame). Each face
gets a P x P crop, P from a short ladder of sizes just above its mask reach plus the box filter's
(faces of one size class are done together, so a 70 px face does not pay for a 300 px one). In the
crop we evaluate the reference mask formula (toolchain.reference.masks: ellipse turned by the eye
line, soft edge) for every face of the same frame and take the maximum (the union, as frame_mask
does), sample the pooled image with the bilinear grid OpenCV's resize uses, box-filter it (integral
image, per-face window), blend, and write back only the pixels the face's own mask reaches: there
every crop that covers a pixel computes the same value, so overlapping faces never race.
Only face pixels are read or written; memory stays small whatever the frame size.
"""

from __future__ import annotations

import math

from .cpu import BLOCKS_PER_FACE, MIN_K


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


SIZES = (32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)


def frame_factors(dets):
    """Per frame: k from its largest kept face (ops.cpu.blur_factor), on the device; 0 = no face."""
    import torch

    b = dets.boxes.double()
    side = torch.minimum(b[..., 2] - b[..., 0], b[..., 3] - b[..., 1])
    side = torch.where(dets.keep, side, torch.full_like(side, -1.0))
    side = side.amax(1) if side.shape[1] else torch.full(side.shape[:1], -1.0, dtype=side.dtype, device=side.device)
    ks = torch.clamp(torch.round(side / BLOCKS_PER_FACE), min=MIN_K)
    return torch.where(side >= 0, ks, torch.zeros_like(ks)).long()


def box_filter(x, radius):
    """Per-sample box mean: x [N, C, P, P], radius [N] (window 2r+1), edges averaging valid pixels only.

    Integral-image form (O(1) per pixel whatever r; r reaches ~50 px at 1080p), like cv2.blur.
    """
    import torch
    import torch.nn.functional as F

    n, c, p, _ = x.shape
    idx = torch.arange(p, device=x.device)
    lo = (idx[None, :] - radius[:, None]).clamp(0, p)
    hi = (idx[None, :] + radius[:, None] + 1).clamp(0, p)
    cnt = (hi - lo).to(x.dtype)
    cw = F.pad(x.cumsum(3), (1, 0))
    x = (cw.gather(3, hi[:, None, None, :].expand(n, c, p, p)) -
         cw.gather(3, lo[:, None, None, :].expand(n, c, p, p))) / cnt[:, None, None, :]
    ch = F.pad(x.cumsum(2), (0, 0, 1, 0))
    return (ch.gather(2, hi[:, None, :, None].expand(n, c, p, p)) -
            ch.gather(2, lo[:, None, :, None].expand(n, c, p, p))) / cnt[:, None, :, None]


def area_pool(frame, k: int):
    """uint8 [H, W, 3] -> float32 [3, ceil(H/k), ceil(W/k)] block means (cv2.INTER_AREA by k; partial
    blocks at the right/bottom average their valid pixels).

    A reshape-and-sum, not avg_pool2d: with a large window (k ~ 100 at 1080p) the pooling kernel gives
    each output element to one thread looping over k*k pixels, a few hundred threads in all (see
    scripts/gpu_profile.py for the two timed side by side); the reduction spreads over the whole GPU.
    """
    import torch
    import torch.nn.functional as F

    h, w, _ = frame.shape
    hp, wp = -(-h // k) * k, -(-w // k) * k
    x = frame if (hp, wp) == (h, w) else F.pad(frame.permute(2, 0, 1), (0, wp - w, 0, hp - h)).permute(1, 2, 0)
    sums = x.reshape(hp // k, k, wp // k, k, 3).sum((1, 3), dtype=torch.int32).float()  # exact integers
    nh = (torch.arange(hp // k, device=frame.device) * k - h).neg().clamp(max=k)  # valid rows per block
    nw = (torch.arange(wp // k, device=frame.device) * k - w).neg().clamp(max=k)
    return (sums / (nh[:, None, None] * nw[None, :, None])).permute(2, 0, 1)


def blur_batch(frames, dets, feather: float = 0.15, max_tilt_deg: float = 45.0, max_elems: int = 1 << 23) -> int:
    """Blur the kept faces of `dets` (frame pixels) into `frames` (uint8 [B, H, W, 3]) in place.

    Returns the number of faces blurred. `max_elems` bounds the union-mask temporaries (floats).
    """
    import torch

    bsz, h, w, _ = frames.shape
    dev = frames.device
    ks_dev = frame_factors(dets)
    # Compact each frame's kept faces to the front: K drops from the pre-NMS candidate count (tens)
    # to the most faces in one frame, which sets the size of the union-mask work.
    counts = dets.keep.sum(1)
    stats = torch.cat([ks_dev, counts.max().reshape(1) if bsz else counts.new_zeros(1)]).tolist()  # one sync
    ks, kf = stats[:bsz], int(stats[bsz])
    if kf == 0:
        return 0
    order = torch.argsort((~dets.keep).to(torch.uint8), dim=1, stable=True)[:, :kf]
    keep = torch.gather(dets.keep, 1, order)
    params = ellipse_params_torch(dets.boxes, dets.landmarks, max_tilt_deg)  # [B, K, 5] float64
    params = torch.gather(params, 1, order[..., None].expand(-1, -1, 5))
    # Each frame's pooled image (OpenCV INTER_AREA by its k), padded into one tensor.
    hs = max(-(-h // k) for k in ks if k)
    ws = max(-(-w // k) for k in ks if k)
    small = torch.zeros((bsz, 3, hs, ws), dtype=torch.float32, device=dev)
    for i, k in enumerate(ks):
        if k:
            small[i, :, : -(-h // k), : -(-w // k)] = area_pool(frames[i], k)
    fb, fk = torch.nonzero(keep, as_tuple=True)
    face = params[fb, fk]  # [n, 5] every kept face of the batch
    kface = ks_dev[fb]
    mask_reach = (1.0 + feather) * torch.maximum(face[:, 2], face[:, 3]) + 1
    reach = mask_reach + (kface | 1).double()  # + the box filter's reach
    rows = torch.stack([fb.double(), face[:, 0], face[:, 1], mask_reach, 2 * torch.ceil(reach) + 2], 1).tolist()
    buckets: dict[int, list[int]] = {}  # second sync above: crop sizes and neighbours
    for j, row in enumerate(rows):
        p = next((s for s in SIZES if s >= row[4]), int(-(-row[4] // 256) * 256))
        buckets.setdefault(p, []).append(j)
    face32 = face.float()
    per_frame: dict[int, list[int]] = {}
    for j, row in enumerate(rows):
        per_frame.setdefault(int(row[0]), []).append(j)
    for p, idx in sorted(buckets.items()):
        per = max(1, max_elems // (p * p))
        for s in range(0, len(idx), per):
            chunk = idx[s:s + per]
            # Faces of the same frame whose mask reaches into this crop: their masks join the union.
            pj, pg = [], []
            for li, j in enumerate(chunk):
                x0, y0 = math.floor(rows[j][1] - p / 2), math.floor(rows[j][2] - p / 2)
                for g in per_frame[int(rows[j][0])]:
                    if g != j and rows[g][1] + rows[g][3] >= x0 and rows[g][1] - rows[g][3] <= x0 + p and \
                            rows[g][2] + rows[g][3] >= y0 and rows[g][2] - rows[g][3] <= y0 + p:
                        pj.append(li)
                        pg.append(g)
            _blur_crops(frames, small, face32, fb, kface, _ix(chunk, dev), p, _ix(pj, dev), _ix(pg, dev), feather)
    return len(rows)


def _ix(values: list[int], dev):
    """A small index list on the device without a synchronising copy (pinned-free, non-blocking)."""
    import torch

    return torch.as_tensor(values, dtype=torch.long).to(dev, non_blocking=True)


def _ellipse_prob(prm, xs, ys, feather: float):
    """The reference mask formula (masks.rasterize_mask) for faces [N, 5] over crops [N, P] x [N, P]."""
    import torch

    px = (xs.float() + 0.5)[:, None, :] - prm[:, 0, None, None]
    py = (ys.float() + 0.5)[:, :, None] - prm[:, 1, None, None]
    c, sn = torch.cos(prm[:, 4])[:, None, None], torch.sin(prm[:, 4])[:, None, None]
    u, v = c * px + sn * py, -sn * px + c * py
    a = prm[:, 2, None, None].clamp(min=1e-12)
    b = prm[:, 3, None, None].clamp(min=1e-12)
    m = (0.5 + (1.0 - torch.sqrt((u / a) ** 2 + (v / b) ** 2)) / (2.0 * feather)).clamp(0, 1)
    return torch.where(((prm[:, 2] > 0) & (prm[:, 3] > 0))[:, None, None], m, torch.zeros_like(m))


def _blur_crops(frames, small, face32, fb_all, kface_all, sel, p: int, pj, pg, feather: float) -> None:
    import torch
    import torch.nn.functional as F

    _, h, w, _ = frames.shape
    dev = frames.device
    ar = torch.arange(p, device=dev)
    flat = frames.view(-1, 3)
    hp, wp = small.shape[-2:]
    prm, b, kf = face32[sel], fb_all[sel], kface_all[sel]
    ox = torch.floor(prm[:, 0] - p / 2).long()
    oy = torch.floor(prm[:, 1] - p / 2).long()
    xs = (ox[:, None] + ar).clamp(0, w - 1)  # [F, P]
    ys = (oy[:, None] + ar).clamp(0, h - 1)
    own_m = _ellipse_prob(prm, xs, ys, feather)  # [F, P, P]
    m = own_m
    if pj.numel():  # the union with neighbouring faces (frame_mask takes the max)
        import warnings

        with warnings.catch_warnings():  # "index_reduce() is in beta": it is the scatter-max we need
            warnings.simplefilter("ignore", UserWarning)
            m = own_m.index_reduce(0, pj, _ellipse_prob(face32[pg], xs[pj], ys[pj], feather), "amax")
    # Blurred pixels: bilinear from the frame's pooled image at (x + 0.5) / k - 0.5 (OpenCV's resize),
    # clamped to that image (its border), then the k-wide box filter, as ops.cpu.blurred_region.
    k = kf.double()[:, None]
    sx = torch.minimum(((xs.double() + 0.5) / k - 0.5).clamp(min=0.0), torch.ceil(w / k) - 1)
    sy = torch.minimum(((ys.double() + 0.5) / k - 0.5).clamp(min=0.0), torch.ceil(h / k) - 1)
    gx = ((2 * sx + 1) / wp - 1).float()[:, None, :].expand(-1, p, -1)
    gy = ((2 * sy + 1) / hp - 1).float()[:, :, None].expand(-1, -1, p)
    up = F.grid_sample(small[b], torch.stack([gx, gy], -1), mode="bilinear", padding_mode="border",
                       align_corners=False)
    blurred = box_filter(up, (kf | 1) // 2).permute(0, 2, 3, 1)  # [F, P, P, 3]
    # Write only the pixels this face's own mask reaches: every crop covering such a pixel computes the
    # same value there, so overlapping crops never race (one sync: the pixel count).
    at = (own_m > 0).reshape(-1).nonzero().squeeze(1)
    lin = ((b[:, None, None] * h + ys[:, :, None]) * w + xs[:, None, :]).reshape(-1)[at]
    sharp = flat[lin].float()
    out = sharp + m.reshape(-1)[at][:, None] * (blurred.reshape(-1, 3)[at] - sharp)
    flat[lin] = (out + 0.5).clamp(0, 255).to(torch.uint8)
