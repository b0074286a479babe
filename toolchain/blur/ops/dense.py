"""The face blur in PyTorch with a launch count that does not grow with the number of faces.

ops.torch.blur_batch crops each face (size-classed) and box-filters it: exact to ops.cpu, but a few
hundred small kernels and several host syncs per batch, which left the GPU idle (host-bound, see
docs/bench.md). Here the whole batch goes through the same few large kernels:

1. the batch is area-pooled once by f0 (a reshape-and-sum on the uint8 frames; f0 = 4 at 1080p, 1 at
   270p), then by 2 again and again: a pyramid of blurred copies at factors max(4, 2 f0), ..., 256;
2. each frame takes the level closest above its k (ops.cpu.blur_factor: the largest face / 3), as the
   CPU blur takes one k per frame; the levels are brought back to the 1/f0 grid (bilinear) and
   smoothed by a 3x3 box (removes the bilinear kinks, which are detail too);
3. the union mask (toolchain.reference.masks.frame_mask: the same ellipse, tilt and soft edge
   formulas) is evaluated for ALL faces of the batch at once on a fixed-size grid per face around its
   centre, on the 1/f0 grid, and merged with scatter_reduce(amax) (the union is a max, as there);
4. blurred copy and mask are upsampled together (bilinear, x f0) a few frames at a time and
   composited: out = frame + m * (blurred - frame). Where m = 0 (away from faces) out == frame exactly.

One host sync per batch (the most faces in one frame and the largest face reach: tensor shapes).
The blur is not bit-equal to ops.cpu (power-of-two levels, mask at 1/f0 resolution); the pixel proof
(toolchain/blur/proof.py) is the judge, as for every backend.
"""

from __future__ import annotations

import math

from .cpu import MIN_K
from .torch import ellipse_params_torch, frame_factors

MAX_LEVEL = 256  # the coarsest blur factor: a 768 px face (k = 256) at 4K


def grid_factor(h: int, w: int) -> int:
    """f0: the mask / blurred-copy grid is 1/f0 of the frame (power of two, ~270 rows or more)."""
    f = 1
    while min(h, w) // (2 * f) >= 270 and 2 * f <= MIN_K:
        f *= 2
    return f


def union_mask(params, keep, hb: int, wb: int, f0: int, feather: float, grid: int):
    """Union (max) of the faces' probability masks, sampled at the centres of the 1/f0 grid.

    params [B, K, 5] (cx, cy, a, b, tilt in frame pixels), keep [B, K] bool -> [B, hb, wb] float32.
    Each face is evaluated on a grid x grid window (grid cells of f0 pixels) centred on it; windows
    cover the face's whole reach, so the result is frame_mask's at those points (f0 = 1: every pixel).
    """
    import torch

    bsz, k = keep.shape
    dev = keep.device
    out = torch.zeros(bsz * hb * wb, dtype=torch.float32, device=dev)
    if k == 0 or bsz == 0:
        return out.view(bsz, hb, wb)
    prm = params.float().reshape(-1, 5)  # [B*K, 5]
    cx, cy, a, b, t = prm.unbind(1)
    ar = torch.arange(grid, device=dev)
    # Window origin on the grid: centre cell minus half the window.
    jx = torch.floor(cx / f0).long() - grid // 2
    jy = torch.floor(cy / f0).long() - grid // 2
    gx = jx[:, None] + ar  # [F, G] grid columns
    gy = jy[:, None] + ar
    px = ((gx.float() + 0.5) * f0)[:, None, :] - cx[:, None, None]  # grid cell centres, frame pixels
    py = ((gy.float() + 0.5) * f0)[:, :, None] - cy[:, None, None]
    c, s = torch.cos(t)[:, None, None], torch.sin(t)[:, None, None]
    u = (c * px + s * py) / a.clamp(min=1e-12)[:, None, None]
    v = (c * py - s * px) / b.clamp(min=1e-12)[:, None, None]
    m = (0.5 + (1.0 - torch.sqrt(u * u + v * v)) / (2.0 * feather)).clamp_(0, 1)
    ok = (keep.reshape(-1) & (a > 0) & (b > 0))[:, None, None] & \
        ((gx >= 0) & (gx < wb))[:, None, :] & ((gy >= 0) & (gy < hb))[:, :, None]
    m = torch.where(ok, m, torch.zeros_like(m))  # off-frame cells and dropped rows add nothing
    fb = torch.arange(bsz, device=dev).repeat_interleave(k)
    lin = (fb[:, None, None] * hb + gy.clamp(0, hb - 1)[:, :, None]) * wb + gx.clamp(0, wb - 1)[:, None, :]
    out.scatter_reduce_(0, lin.reshape(-1), m.reshape(-1), "amax")
    return out.view(bsz, hb, wb)


def _pool_base(frames, f0: int, dtype, chunk: int | None = None):
    """uint8 [B, H, W, 3] -> [B, 3, ceil(H/f0), ceil(W/f0)] block means (channels_last).

    chunk: frames reduced at once (None: the whole batch). The reduction casts its input to int16 first, a
    full-size copy (2 bytes a pixel channel: 12 MB a 1080p frame); exact integer sums, so any chunk gives
    the same result."""
    import torch
    import torch.nn.functional as F

    bsz, h, w, _ = frames.shape
    if h % f0 == 0 and w % f0 == 0:  # one reduction per chunk, exact integers, no float copy of it
        # int16 holds f0 * f0 * 255 (f0 <= 4: 4080): half the temporary of int32
        step = chunk or bsz
        x = frames if f0 == 1 else torch.cat([
            frames[s:s + step].reshape(-1, h // f0, f0, w // f0, f0, 3).sum((2, 4), dtype=torch.int16)
            for s in range(0, bsz, step)])
        return (x.to(dtype) / float(f0 * f0)).permute(0, 3, 1, 2)
    parts = [F.avg_pool2d(frames[s:s + 4].permute(0, 3, 1, 2).to(dtype), f0, ceil_mode=True)
             for s in range(0, bsz, 4)]
    return torch.cat(parts).contiguous(memory_format=torch.channels_last)


def blurred_levels(base, f0: int, level_idx):
    """Pyramid of base (factor f0) at factors 4, 8, ..., MAX_LEVEL, each frame taking level_idx[b],
    brought back to base's grid and smoothed by a 3x3 box -> [B, 3, hb, wb]."""
    import torch
    import torch.nn.functional as F

    hb, wb = base.shape[-2:]
    factors = level_factors(f0)
    x, f = base, f0
    sel = base
    for li, lf in enumerate(factors):
        while f < lf:
            x, f = F.avg_pool2d(x, 2, ceil_mode=True), f * 2
        up = F.interpolate(x, size=(hb, wb), mode="bilinear", align_corners=False)
        pick = (level_idx >= li) if li == len(factors) - 1 else (level_idx == li)
        sel = torch.where(pick[:, None, None, None], up, sel)
    return F.avg_pool2d(sel, 3, stride=1, padding=1, count_include_pad=False)


def level_factors(f0: int) -> list[int]:
    """The pyramid's blur factors: powers of two from max(4, 2 f0) to MAX_LEVEL."""
    f = max(MIN_K, 2 * f0)
    out = []
    while f <= MAX_LEVEL:
        out.append(f)
        f *= 2
    return out


def level_index(ks, f0: int):
    """Per frame: index into level_factors(f0) for blur factor k: the first power of two >= k (a
    stronger blur than k, never a weaker one); the last level for anything coarser."""
    import torch

    first = max(MIN_K, 2 * f0)
    lvl = torch.ceil(torch.log2(ks.clamp(min=first).double() / first) - 1e-9).clamp(0, len(level_factors(f0)) - 1)
    return lvl.long()


def blur_batch_dense(frames, dets, feather: float = 0.15, max_tilt_deg: float = 45.0,
                     max_elems: int = 1 << 24, f0: int | None = None) -> int:
    """Blur the kept faces of `dets` (frame pixels) into `frames` (uint8 [B, H, W, 3]) in place.

    Returns the number of faces blurred (as ops.torch.blur_batch).
    """
    import torch
    import torch.nn.functional as F

    bsz, h, w, _ = frames.shape
    if bsz == 0 or dets.keep.shape[1] == 0:
        return 0
    f0 = f0 or grid_factor(h, w)
    dtype = torch.float16 if frames.is_cuda else torch.float32
    params = ellipse_params_torch(dets.boxes, dets.landmarks, max_tilt_deg)  # [B, K, 5] float64
    keep = dets.keep
    reach = torch.where(keep, (1.0 + feather) * torch.maximum(params[..., 2], params[..., 3]) + 1,
                        torch.zeros_like(params[..., 0]))
    counts = keep.sum(1)
    stats = torch.stack([counts.sum().double(), counts.max().double(), reach.max()]).tolist()  # the one sync
    n, kf, rmax = int(stats[0]), int(stats[1]), stats[2]
    if n == 0:
        return 0
    # Compact each frame's faces to the front: K drops from the candidate rows to the most faces per frame.
    order = torch.argsort((~keep).to(torch.uint8), dim=1, stable=True)[:, :kf]
    keep = torch.gather(keep, 1, order)
    params = torch.gather(params, 1, order[..., None].expand(-1, -1, 5))
    grid = 2 * math.ceil(rmax / f0) + 4
    grid = -(-grid // 8) * 8  # a short ladder of shapes: the caching allocator reuses blocks
    hb, wb = -(-h // f0), -(-w // f0)
    per = max(1, (max_elems // 4) // (kf * grid * grid))  # frames per mask chunk (bounds the temporaries)
    mask = torch.cat([union_mask(params[s:s + per], keep[s:s + per], hb, wb, f0, feather, grid)
                      for s in range(0, bsz, per)])
    ks = frame_factors(dets)
    blurred = blurred_levels(_pool_base(frames, f0, dtype), f0, level_index(ks, f0))
    both = torch.cat([blurred, mask[:, None].to(dtype)], 1).contiguous(memory_format=torch.channels_last)
    del blurred, mask
    step = max(1, (max_elems * 2) // (4 * h * w))  # frames per composite chunk (4 at 1080p: ~120 MB fp16)
    for s in range(0, bsz, step):
        up = both[s:s + step]
        if f0 > 1:
            up = F.interpolate(up, size=(h, w), mode="bilinear", align_corners=False)
        up = up.permute(0, 2, 3, 1)  # NHWC view (channels_last memory: no copy)
        dst = frames[s:s + step]
        b = up[..., :3]  # blended in the upsampled buffer itself: no float copy of the frames
        b.sub_(dst).mul_(up[..., 3:]).add_(dst).add_(0.5).clamp_(0, 255)  # frame + m * (blurred - frame)
        dst.copy_(b)  # truncation after +0.5: rounding; m = 0 gives the input back exactly
    return n
