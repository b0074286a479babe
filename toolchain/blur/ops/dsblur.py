"""fbtool's DeepStream blur in PyTorch: the one Python reference for plugins/dsblur/blur.cu.

DeepStream hands the blur what nvinfer attached per object: a float box in frame pixels and the
parser's mask grid over it (NvDsObjectMeta rect_params + mask_params; plugins/dsblur/fbtool_dsblur.h
is the C side). The algorithm is `fbtool blur`'s (ops/cpu.py, ops/dense.py): k from the face's size,
a box-average blur, a blend through the mask. Stated so a CUDA kernel can compute it exactly:

- each box grown about its centre by GROW (1.6), the mask grid stretched over it, so the face's contour
  ellipse grows with it: the recall-first margin of `fbtool blur` (blur.mask_scale 1.3, more where the
  landmarks are implausible; nvinfer's objects carry no landmarks, and a live pipeline's boxes lag a
  moving face). Measured (docs/deepstream.md, every frame of every shared clip): 1.4 and 1.5 leave
  faces at the edge of fast boxes with 56-86% of their detail dropped, 1.6 none;
- one k per frame (and plane): the largest over the (grown) objects of max(min_k, floor(short side / 3
  + 0.5)) (min_k 4; 2 on NV12's half-size UV plane), as `fbtool blur` (ops/cpu.py blur_factor): with a
  k per object, two blurs meet in a seam inside a face, and a seam is detail;
- block means M over the frame-anchored k x k grid (partial blocks at the right/bottom average their
  valid pixels, as cv2.INTER_AREA does);
- B = M bilinearly back up on OpenCV INTER_LINEAR's grid (u = (x + 0.5) / k - 0.5, clamped to the
  grid), then a (k|1)-wide box filter over B (window r = k // 2 each side, averaging frame pixels
  only): the bilinear kinks are detail too (ops/cpu.py). Both steps are separable, so the value at a
  pixel is sum_ij Wy_j(y) Wx_i(x) M[j, i] with per-row/column weights over three cells;
- m = the mask sampled bilinearly over the float box (pixel centres inside [left, left + width),
  0 outside, clamped to [0, 1]); no mask (None or empty) = 1 over the whole box;
- where objects overlap, m is the largest of their masks there (the union, as reference.masks.frame_mask
  takes the max); the first object whose mask reaches a pixel writes it (all share k: the same value);
- out = floor(f + m * (blur - f) + 0.5), clamped to 0..255; pixels where every m is 0 are not written.

Arithmetic in float64 here and in the kernel (so both round the same way but for sums taken in another
order: tests count the pixels that differ). Channels are independent: a BGR numpy frame is blurred as
DeepStream's RGBA surface is (alpha kept); NV12 blurs Y at full size and UV as a half-size image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BLOCKS_PER_FACE = 3.0
MIN_K, MIN_K_UV = 4, 2
GROW = 1.6  # plugins/dsblur/fbtool_dsblur.h FBTOOL_DSBLUR_GROW


@dataclass(frozen=True)
class DsBlurObject:
    """One object as the custom library passes it (FbtoolDsBlurObject): box in frame pixels, mask over it."""

    left: float
    top: float
    width: float
    height: float
    mask: np.ndarray | None = None  # float32 [mask_h, mask_w] over the box (NvOSD_MaskParams), or None

    @classmethod
    def of(cls, obj) -> DsBlurObject:
        """From anything with left/top/width/height/mask (nvinfer emulation's ObjectMeta), as float32
        (NvOSD_RectParams holds floats)."""
        mask = getattr(obj, "mask", None)
        return cls(float(np.float32(obj.left)), float(np.float32(obj.top)), float(np.float32(obj.width)),
                   float(np.float32(obj.height)), None if mask is None else np.asarray(mask, np.float32))


def c_objects(objs) -> tuple:
    """`objs` as the C ABI's FbtoolDsBlurObject array (plugins/dsblur/fbtool_dsblur.h), for callers of the
    compiled kernel (the H200 checks). Returns (array, masks): keep `masks` alive while the array is used."""
    import ctypes

    class Obj(ctypes.Structure):
        _fields_ = [("left", ctypes.c_float), ("top", ctypes.c_float), ("width", ctypes.c_float),
                    ("height", ctypes.c_float), ("mask_host", ctypes.POINTER(ctypes.c_float)),
                    ("mask_w", ctypes.c_int), ("mask_h", ctypes.c_int)]

    keep, arr = [], (Obj * max(1, len(objs)))()
    for i, o in enumerate(objs):
        m = None if o.mask is None else np.ascontiguousarray(o.mask, np.float32)
        keep.append(m)
        arr[i] = Obj(o.left, o.top, o.width, o.height,
                     None if m is None else m.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                     0 if m is None else m.shape[1], 0 if m is None else m.shape[0])
    return arr, keep


def block_size(width: float, height: float, min_k: int = MIN_K) -> int:
    return max(min_k, int(math.floor(min(width, height) / BLOCKS_PER_FACE + 0.5)))


def _pixels(start: float, size: float, n: int) -> tuple[int, int]:
    """[a, b): the pixels whose centres lie in [start, start + size), inside 0..n."""
    a = math.ceil(start - 0.5)
    b = math.ceil(start + size - 0.5)
    return max(a, 0), min(b, n)


def _mask_axis(torch, start: float, size: float, a: int, b: int, cells: int):
    """Bilinear sample positions of the pixels [a, b) on a mask axis of `cells` cells: (i0, i1, frac)."""
    u = ((torch.arange(a, b, dtype=torch.float64) + 0.5 - start) / size * cells - 0.5).clamp(0, cells - 1)
    i0 = u.floor().long()
    return i0, (i0 + 1).clamp(max=cells - 1), u - i0


def object_mask(torch, o: DsBlurObject, x: tuple[int, int], y: tuple[int, int]):
    """m over the box's pixels [y0:y1, x0:x1] (float64)."""
    (x0, x1), (y0, y1) = x, y
    if o.mask is None or o.mask.size == 0:
        return torch.ones((y1 - y0, x1 - x0), dtype=torch.float64)
    g = torch.from_numpy(np.ascontiguousarray(o.mask, np.float32)).double()
    mh, mw = g.shape
    ix0, ix1, fx = _mask_axis(torch, o.left, o.width, x0, x1, mw)
    iy0, iy1, fy = _mask_axis(torch, o.top, o.height, y0, y1, mh)
    top = g[iy0][:, ix0] * (1 - fx) + g[iy0][:, ix1] * fx
    bot = g[iy1][:, ix0] * (1 - fx) + g[iy1][:, ix1] * fx
    return (top * (1 - fy)[:, None] + bot * fy[:, None]).clamp(0, 1)


def _axis_weights(torch, a: int, b: int, n: int, k: int):
    """Separable weights of the blur along one axis for the pixels [a, b): (first cell, [b - a, cells])."""
    r = k // 2
    nc = -(-n // k)
    ca, cb = max(a - r, 0), min(b + r, n)  # the pixels the box windows read
    u = ((torch.arange(ca, cb, dtype=torch.float64) + 0.5) / k - 0.5).clamp(0, nc - 1)
    i0 = u.floor().long()
    f = u - i0
    c0 = int(i0[0])
    span = int(i0[-1]) + 2 - c0
    hat = torch.zeros((cb - ca, span), dtype=torch.float64)
    rows = torch.arange(cb - ca)
    hat[rows, i0 - c0] += 1 - f
    hat[rows, (i0 + 1).clamp(max=nc - 1) - c0] += f
    cum = torch.cat([torch.zeros((1, span), dtype=torch.float64), hat.cumsum(0)])
    px = torch.arange(a, b)
    lo, hi = (px - r).clamp(min=0), (px + r + 1).clamp(max=n)
    w = (cum[hi - ca] - cum[lo - ca]) / (hi - lo).double()[:, None]
    return c0, w[:, : min(span, nc - c0)]


def _block_means(torch, plane, k: int, cy: tuple[int, int], cx: tuple[int, int]):
    """Means of the frame-anchored k-blocks rows cy[0]..cy[1]-1, columns cx[0]..cx[1]-1 -> [ny, nx, C]."""
    h, w, c = plane.shape
    ya, yb, xa, xb = cy[0] * k, min(cy[1] * k, h), cx[0] * k, min(cx[1] * k, w)
    crop = plane[ya:yb, xa:xb].to(torch.int64)
    ny, nx = cy[1] - cy[0], cx[1] - cx[0]
    pad = torch.zeros((ny * k, nx * k, c), dtype=torch.int64)
    pad[: yb - ya, : xb - xa] = crop
    sums = pad.reshape(ny, k, nx, k, c).sum((1, 3))
    cnt_y = (torch.minimum(torch.arange(cy[0] + 1, cy[1] + 1) * k, torch.tensor(h)) - torch.arange(cy[0], cy[1]) * k)
    cnt_x = (torch.minimum(torch.arange(cx[0] + 1, cx[1] + 1) * k, torch.tensor(w)) - torch.arange(cx[0], cx[1]) * k)
    return sums.double() / (cnt_y[:, None] * cnt_x[None, :]).double()[..., None]


def blur_plane(plane, objects, scale: float = 1.0, min_k: int = MIN_K, channels: int | None = None,
               grow: float = GROW):
    """Blur one uint8 plane [H, W, C] (torch or numpy) for `objects` (frame pixels; x `scale` for a
    subsampled plane; boxes grown by `grow`); the first `channels` channels are blurred (all by
    default). Returns a new uint8 torch tensor."""
    import torch

    src = torch.as_tensor(np.asarray(plane)) if not isinstance(plane, torch.Tensor) else plane
    src = src.cpu()
    if src.dim() == 2:
        src = src[..., None]
    h, w, nch = src.shape
    nb = nch if channels is None else channels
    out = src.clone()
    objs = [DsBlurObject.of(o) for o in objects]
    grown = []
    for o in objs:
        left, top, bw, bh = o.left * scale, o.top * scale, o.width * scale, o.height * scale
        left, top, bw, bh = left - bw * ((grow - 1) / 2), top - bh * ((grow - 1) / 2), bw * grow, bh * grow
        x, y = (_pixels(left, bw, w), _pixels(top, bh, h)) if bw > 0 and bh > 0 else ((0, 0), (0, 0))
        grown.append(None if x[0] >= x[1] or y[0] >= y[1] else (left, top, bw, bh, x, y))
    # one k for the plane, the largest object's (a seam between two k's inside a face is detail)
    k = max((block_size(g[2], g[3], min_k) for g in grown if g is not None), default=min_k)
    boxes = []
    owner = torch.full((h, w), -1, dtype=torch.long)
    m_max = torch.zeros((h, w), dtype=torch.float64)
    for i, (o, g) in enumerate(zip(objs, grown)):
        if g is None:
            boxes.append(None)
            continue
        left, top, bw, bh, x, y = g
        so = DsBlurObject(left, top, bw, bh, o.mask)
        m = object_mask(torch, so, x, y)
        sl = (slice(y[0], y[1]), slice(x[0], x[1]))
        hit = m > 0
        take = hit & (owner[sl] < 0)  # one k per plane: the first object whose mask reaches a pixel
        owner[sl] = torch.where(take, torch.tensor(i), owner[sl])
        m_max[sl] = torch.where(hit, torch.maximum(m_max[sl], m), m_max[sl])
        boxes.append((x, y, k))
    for i, box in enumerate(boxes):
        if box is None:
            continue
        (x0, x1), (y0, y1), k = box
        mine = owner[y0:y1, x0:x1] == i
        if not bool(mine.any()):
            continue
        cx0, wx = _axis_weights(torch, x0, x1, w, k)
        cy0, wy = _axis_weights(torch, y0, y1, h, k)
        mcells = _block_means(torch, src[..., :nb], k, (cy0, cy0 + wy.shape[1]), (cx0, cx0 + wx.shape[1]))
        blurred = torch.einsum("yj,jic,xi->yxc", wy, mcells, wx)
        f = src[y0:y1, x0:x1, :nb].double()
        m = m_max[y0:y1, x0:x1][..., None]
        res = torch.floor(f + m * (blurred - f) + 0.5).clamp(0, 255).to(torch.uint8)
        region = out[y0:y1, x0:x1, :nb]
        region[mine] = res[mine]
    return out if nch > 1 or plane.ndim == 3 else out[..., 0]


def blur_rgba(rgba, objects, grow: float = GROW):
    """uint8 [H, W, 4]: R, G, B blurred, alpha kept."""
    return blur_plane(rgba, objects, channels=3, grow=grow)


def blur_nv12(y, uv, objects, grow: float = GROW):
    """uint8 Y [H, W] and interleaved UV [H/2, W/2, 2] -> (Y, UV) blurred."""
    return blur_plane(y, objects, 1.0, MIN_K, grow=grow), blur_plane(uv, objects, 0.5, MIN_K_UV, grow=grow)


def blur_frame(frame: np.ndarray, objects, grow: float = GROW) -> np.ndarray:
    """A numpy HxWx3 frame (any channel order: channels are independent) as DeepStream's RGBA surface."""
    return blur_plane(frame, objects, grow=grow).numpy()
