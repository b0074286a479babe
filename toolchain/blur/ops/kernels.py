"""Two single-pass GPU kernels (Triton) for the graphed CUDA stage, each with a PyTorch twin.

- `composite`: the face blur's last step in ONE launch per batch, whatever the face count: every pixel
  takes the union (max) of its faces' reference mask probabilities (toolchain.reference.masks: the
  same ellipse, tilt and soft edge; evaluated at the pixel centre, full resolution), and, where that is
  above zero, is blended with a bilinear sample of the blurred copy: out = frame + m (blurred - frame).
  Tiles that no face reaches are left untouched (no read, no write): away from faces out == frame.
- `nv12_to_bgr`: NVDEC's NV12 surface (BT.601 limited range, what FFmpeg assumes for untagged H.264)
  to packed BGR uint8, one pass, no float temporaries.

The PyTorch twins compute the same functions with plain tensor ops: they run on the CPU (tests) and
wherever Triton is missing. Tests compare each kernel with its twin (Triton's interpreter on the CPU,
TRITON_INTERPRET=1; the real kernels on the GPU machine).
"""

from __future__ import annotations

try:  # Triton ships with PyTorch's CUDA wheels; absent on CPU-only installs
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None


def triton_ok(t) -> bool:
    """Whether the Triton kernels can run on tensor t (a CUDA tensor, or the interpreter on the CPU)."""
    import os

    if triton is None:
        return False
    return t.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"


# Face table row: cx, cy, a, b, cos t, sin t, reach (0 = no face). Float32, [B, M, 7].
FACE_COLS = 7


def face_table(params, keep, feather: float):
    """ellipse params [B, M, 5] (cx, cy, a, b, tilt) + keep [B, M] -> face table [B, M, 7] float32."""
    import torch

    p = params.double()
    ok = keep & (p[..., 2] > 0) & (p[..., 3] > 0)
    reach = torch.where(ok, (1.0 + feather) * torch.maximum(p[..., 2], p[..., 3]) + 1, torch.zeros_like(p[..., 0]))
    tab = torch.stack([p[..., 0], p[..., 1], p[..., 2].clamp(min=1e-12), p[..., 3].clamp(min=1e-12),
                       torch.cos(p[..., 4]), torch.sin(p[..., 4]), reach], -1)
    return tab.float().contiguous()


def _mask_torch(faces, h: int, w: int, feather: float, y0: int = 0, y1: int | None = None):
    """Union mask [B, y1-y0, W] float32 at pixel centres (the reference formula), one face at a time."""
    import torch

    y1 = h if y1 is None else y1
    dev = faces.device
    bsz, m = faces.shape[:2]
    py = (torch.arange(y0, y1, device=dev, dtype=torch.float32) + 0.5)[None, :, None]
    px = (torch.arange(w, device=dev, dtype=torch.float32) + 0.5)[None, None, :]
    out = torch.zeros((bsz, y1 - y0, w), dtype=torch.float32, device=dev)
    for k in range(m):
        f = faces[:, k]
        cx, cy, a, b, c, s, reach = (f[:, i, None, None] for i in range(FACE_COLS))
        dx, dy = px - cx, py - cy
        u = (c * dx + s * dy) / a
        v = (c * dy - s * dx) / b
        mk = (0.5 + (1.0 - torch.sqrt(u * u + v * v)) / (2.0 * feather)).clamp(0, 1)
        out = torch.maximum(out, torch.where(reach > 0, mk, torch.zeros_like(mk)))
    return out


def composite_torch(frames, blurred, faces, f0: int, feather: float, rows: int = 64) -> None:
    """PyTorch twin of the composite kernel: frames uint8 [B, H, W, 3] (in place), blurred [B, hb, wb, 3]
    (any float dtype, the 1/f0 grid), faces [B, M, 7]."""
    import torch
    import torch.nn.functional as F

    bsz, h, w, _ = frames.shape
    if faces.shape[1] == 0:
        return
    for y0 in range(0, h, rows):
        y1 = min(h, y0 + rows)
        m = _mask_torch(faces, h, w, feather, y0, y1)
        # bilinear, align_corners=False, clamped at the borders: the kernel's sampling
        gy = ((torch.arange(y0, y1, device=frames.device, dtype=torch.float32) + 0.5) / f0 - 0.5)
        gx = ((torch.arange(w, device=frames.device, dtype=torch.float32) + 0.5) / f0 - 0.5)
        hb, wb = blurred.shape[1:3]
        gy, gx = gy.clamp(0, hb - 1), gx.clamp(0, wb - 1)
        iy0, ix0 = gy.floor().long(), gx.floor().long()
        iy1, ix1 = (iy0 + 1).clamp(max=hb - 1), (ix0 + 1).clamp(max=wb - 1)
        wy, wx = (gy - iy0)[None, :, None, None], (gx - ix0)[None, None, :, None]
        bl = blurred.float()
        top = bl[:, iy0][:, :, ix0] * (1 - wx) + bl[:, iy0][:, :, ix1] * wx
        bot = bl[:, iy1][:, :, ix0] * (1 - wx) + bl[:, iy1][:, :, ix1] * wx
        val = top * (1 - wy) + bot * wy
        dst = frames[:, y0:y1]
        f = dst.float()
        out = (f + m[..., None] * (val - f) + 0.5).clamp(0, 255).to(torch.uint8)
        dst.copy_(torch.where(m[..., None] > 0, out, dst))
    del F


def nv12_to_bgr_torch(nv12, rows: int = 270):
    """PyTorch twin of the NV12 kernel: uint8 [B, H*3/2, W] -> uint8 [B, H, W, 3] (BT.601 limited range)."""
    import torch

    bsz, h3, w = nv12.shape
    h = h3 * 2 // 3
    out = torch.empty((bsz, h, w, 3), dtype=torch.uint8, device=nv12.device)
    for y0 in range(0, h, rows):
        y1 = min(h, y0 + rows)
        y = nv12[:, y0:y1].float()
        uv = nv12[:, h + y0 // 2: h + (y1 + 1) // 2].reshape(bsz, -1, w // 2, 2).float()
        uv = uv.repeat_interleave(2, 1)[:, (y0 % 2): (y0 % 2) + (y1 - y0)].repeat_interleave(2, 2)
        _yuv_to_bgr(y, uv[..., 0], uv[..., 1], out[:, y0:y1])
    return out


def _yuv_to_bgr(y, u, v, out) -> None:
    import torch

    c = 1.164383 * (y - 16.0)
    d, e = u - 128.0, v - 128.0
    r = c + 1.596027 * e
    g = c - 0.391762 * d - 0.812968 * e
    b = c + 2.017232 * d
    for i, ch in enumerate((b, g, r)):
        out[..., i] = torch.floor(ch + 0.5).clamp(0, 255).to(torch.uint8)


if triton is not None:
    @triton.jit
    def _composite_kernel(frame_ptr, blur_ptr, face_ptr, H, W, HB, WB, inv_f0, inv_2feather, M: tl.constexpr,
                          BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
        tx = tl.program_id(0)
        ty = tl.program_id(1)
        b = tl.program_id(2).to(tl.int64)
        x0 = tx * BLOCK_W
        y0 = ty * BLOCK_H
        xs = x0 + tl.arange(0, BLOCK_W)
        ys = y0 + tl.arange(0, BLOCK_H)
        px = xs.to(tl.float32)[None, :] + 0.5
        py = ys.to(tl.float32)[:, None] + 0.5
        m = tl.zeros((BLOCK_H, BLOCK_W), dtype=tl.float32)
        for k in range(M):
            row = face_ptr + (b * M + k) * 7
            cx = tl.load(row)
            cy = tl.load(row + 1)
            reach = tl.load(row + 6)
            hit = (reach > 0) & (cx + reach >= x0) & (cx - reach <= x0 + BLOCK_W) & \
                (cy + reach >= y0) & (cy - reach <= y0 + BLOCK_H)
            if hit:
                a = tl.load(row + 2)
                bb = tl.load(row + 3)
                c = tl.load(row + 4)
                s = tl.load(row + 5)
                dx = px - cx
                dy = py - cy
                u = (c * dx + s * dy) / a
                v = (c * dy - s * dx) / bb
                mk = 0.5 + (1.0 - tl.sqrt(u * u + v * v)) * inv_2feather
                mk = tl.minimum(tl.maximum(mk, 0.0), 1.0)
                m = tl.maximum(m, mk)
        if tl.max(tl.max(m, 1), 0) > 0:  # no face reaches this tile: leave it untouched
            inside = (ys[:, None] < H) & (xs[None, :] < W)
            on = inside & (m > 0)
            gx = tl.minimum(tl.maximum(px * inv_f0 - 0.5, 0.0), (WB - 1).to(tl.float32))
            gy = tl.minimum(tl.maximum(py * inv_f0 - 0.5, 0.0), (HB - 1).to(tl.float32))
            ix0 = gx.to(tl.int32)  # gx >= 0: truncation is floor
            iy0 = gy.to(tl.int32)
            wx = gx - ix0.to(tl.float32)
            wy = gy - iy0.to(tl.float32)
            ix1 = tl.minimum(ix0 + 1, WB - 1)
            iy1 = tl.minimum(iy0 + 1, HB - 1)
            bbase = blur_ptr + b * HB * WB * 3
            fbase = frame_ptr + b * H * W * 3
            pix = (ys[:, None] * W + xs[None, :]) * 3
            for ch in range(3):
                v00 = tl.load(bbase + (iy0 * WB + ix0) * 3 + ch, mask=on, other=0.0).to(tl.float32)
                v01 = tl.load(bbase + (iy0 * WB + ix1) * 3 + ch, mask=on, other=0.0).to(tl.float32)
                v10 = tl.load(bbase + (iy1 * WB + ix0) * 3 + ch, mask=on, other=0.0).to(tl.float32)
                v11 = tl.load(bbase + (iy1 * WB + ix1) * 3 + ch, mask=on, other=0.0).to(tl.float32)
                val = (v00 * (1 - wx) + v01 * wx) * (1 - wy) + (v10 * (1 - wx) + v11 * wx) * wy
                f = tl.load(fbase + pix + ch, mask=on, other=0).to(tl.float32)
                o = f + m * (val - f) + 0.5
                o = tl.minimum(tl.maximum(o, 0.0), 255.0)
                tl.store(fbase + pix + ch, o.to(tl.uint8), mask=on)

    @triton.jit
    def _nv12_kernel(src_ptr, dst_ptr, H, W, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
        tx = tl.program_id(0)
        ty = tl.program_id(1)
        b = tl.program_id(2).to(tl.int64)
        xs = tx * BLOCK_W + tl.arange(0, BLOCK_W)
        ys = ty * BLOCK_H + tl.arange(0, BLOCK_H)
        ok = (ys[:, None] < H) & (xs[None, :] < W)
        sbase = src_ptr + b * (H * 3 // 2) * W
        y = tl.load(sbase + ys[:, None] * W + xs[None, :], mask=ok, other=0).to(tl.float32)
        uvo = (H + ys[:, None] // 2) * W + (xs[None, :] // 2) * 2
        u = tl.load(sbase + uvo, mask=ok, other=128).to(tl.float32)
        v = tl.load(sbase + uvo + 1, mask=ok, other=128).to(tl.float32)
        c = 1.164383 * (y - 16.0)
        d = u - 128.0
        e = v - 128.0
        dbase = dst_ptr + b * H * W * 3 + (ys[:, None] * W + xs[None, :]) * 3
        bl = tl.minimum(tl.maximum(c + 2.017232 * d + 0.5, 0.0), 255.0)
        gr = tl.minimum(tl.maximum(c - 0.391762 * d - 0.812968 * e + 0.5, 0.0), 255.0)
        rd = tl.minimum(tl.maximum(c + 1.596027 * e + 0.5, 0.0), 255.0)
        tl.store(dbase, bl.to(tl.uint8), mask=ok)
        tl.store(dbase + 1, gr.to(tl.uint8), mask=ok)
        tl.store(dbase + 2, rd.to(tl.uint8), mask=ok)


def composite(frames, blurred, faces, f0: int, feather: float, force_torch: bool = False) -> None:
    """frames uint8 [B, H, W, 3] (contiguous, in place), blurred [B, hb, wb, 3] contiguous, faces [B, M, 7]."""
    if force_torch or not triton_ok(frames):
        return composite_torch(frames, blurred, faces, f0, feather)
    bsz, h, w, _ = frames.shape
    hb, wb = blurred.shape[1:3]
    bh, bw = 16, 64
    grid = (triton.cdiv(w, bw), triton.cdiv(h, bh), bsz)
    _composite_kernel[grid](frames, blurred.contiguous(), faces.contiguous(), h, w, hb, wb,
                            1.0 / f0, 1.0 / (2.0 * feather), M=faces.shape[1], BLOCK_H=bh, BLOCK_W=bw)


def nv12_to_bgr(nv12, out=None, force_torch: bool = False):
    """uint8 [B, H*3/2, W] -> uint8 [B, H, W, 3] (into `out` when given)."""
    import torch

    if force_torch or not triton_ok(nv12):
        res = nv12_to_bgr_torch(nv12)
        if out is None:
            return res
        out.copy_(res)
        return out
    bsz, h3, w = nv12.shape
    h = h3 * 2 // 3
    if out is None:
        out = torch.empty((bsz, h, w, 3), dtype=torch.uint8, device=nv12.device)
    bh, bw = 8, 128
    _nv12_kernel[(triton.cdiv(w, bw), triton.cdiv(h, bh), bsz)](nv12, out, h, w, BLOCK_H=bh, BLOCK_W=bw)
    return out
