"""fbtool's DeepStream blur kernel (plugins/dsblur/blur.cu) equals its torch twin
(toolchain/blur/ops/dsblur.py) pixel for pixel on pitched RGBA and NV12 surfaces: real frames at 1080p,
fresh random objects every run (sizes 6..500 px, fractional boxes, boxes cut by the frame's edges,
overlaps, soft / binary / absent masks). Needs a CUDA GPU and nvcc (run on the lent H200)."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
CLIP = REPO.parent / "shared" / "media" / "head-pose-face-detection-female-and-male.gif"
W, H = 1920, 1080
POISON = 0xA5

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    if shutil.which("nvcc") is None or shutil.which("make") is None:
        pytest.skip("nvcc/make not found: the kernel cannot be built")
    out = tmp_path_factory.mktemp("dsblur")
    subprocess.run(["make", "-s", "-C", str(REPO / "plugins" / "nvcheck"), f"BUILD_DIR={out}",
                    str(out / "libfbtool_dsblur.so")], check=True)
    return ctypes.CDLL(str(out / "libfbtool_dsblur.so"))


@pytest.fixture(scope="module")
def frames():
    """Real frames (Pillow: PyAV may be absent on a GPU machine), upscaled to 1080p."""
    import cv2
    from PIL import Image, ImageSequence

    if not CLIP.exists():
        pytest.skip(f"{CLIP} not found")
    with Image.open(CLIP) as im:
        rgb = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)][::14][:4]
    return [cv2.resize(f[:, :, ::-1], (W, H), interpolation=cv2.INTER_LINEAR) for f in rgb]


def random_objects(rng, n: int):
    from toolchain.blur.ops.dsblur import DsBlurObject
    from toolchain.reference.masks import rasterize_mask

    objs = []
    for _ in range(n):
        side = float(np.exp(rng.uniform(np.log(6), np.log(500))))
        w, h = side * rng.uniform(0.7, 1.3), side * rng.uniform(0.7, 1.3)
        x, y = rng.uniform(-0.3 * w, W - 0.7 * w), rng.uniform(-0.3 * h, H - 0.7 * h)
        kind = rng.integers(4)
        mw, mh = int(rng.integers(4, 40)), int(rng.integers(4, 40))
        if kind == 0:
            mask = None  # no mask: the whole box
        else:
            # the parser's mask: the face ellipse over the box, 0 outside the contour (< 0.5)
            tilt = rng.uniform(-0.5, 0.5)
            m = rasterize_mask((mw / 2, mh / 2, mw / 2 * 0.9, mh / 2 * 0.9, tilt), 0, 0, mw, mh, mw, mh, 0.15)
            m = np.where(m >= 0.5, m, 0.0).astype(np.float32)
            mask = (m > 0).astype(np.float32) if kind == 2 else m * (rng.uniform(0.5, 1.5) if kind == 3 else 1.0)
        objs.append(DsBlurObject(float(np.float32(x)), float(np.float32(y)), float(np.float32(w)),
                                 float(np.float32(h)), mask))
    return objs


def c_objects(objs):
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


def surface(img: np.ndarray, pitch: int):
    import torch

    flat = img.reshape(img.shape[0], -1)
    buf = torch.full((img.shape[0], pitch), POISON, dtype=torch.uint8, device="cuda")
    buf[:, : flat.shape[1]] = torch.from_numpy(np.ascontiguousarray(flat)).cuda()
    return buf


def read_back(buf, shape) -> np.ndarray:
    row = int(np.prod(shape[1:]))
    assert bool((buf[:, row:] == POISON).all()), "the kernel wrote into the pitch padding"
    return buf[:, :row].cpu().numpy().reshape(shape)


def test_rgba_and_nv12_equal_the_twin(lib, frames):
    import cv2
    import torch

    from toolchain.blur.ops import dsblur

    seed = int(np.random.SeedSequence().entropy % (1 << 32))
    rng = np.random.default_rng(seed)
    stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
    changed = 0
    for f in frames:
        objs = random_objects(rng, 14)
        arr, keep = c_objects(objs)
        rgba = np.concatenate([f, np.full_like(f[..., :1], 255)], -1)
        s = surface(rgba, 4 * W + 256)
        assert lib.fbtool_dsblur_rgba(ctypes.c_void_p(s.data_ptr()), s.shape[1], W, H, arr, len(objs), stream) == 0
        torch.cuda.synchronize()
        got, ref = read_back(s, rgba.shape), dsblur.blur_rgba(rgba, objs).numpy()
        bad = np.argwhere((got != ref).any(-1))
        assert not len(bad), f"seed {seed}: {len(bad)} RGBA pixels differ, first {bad[:3].tolist()}"
        changed += int((got != rgba).any(-1).sum())

        i420 = cv2.cvtColor(f, cv2.COLOR_BGR2YUV_I420)
        y = i420[:H]
        uv = np.stack([i420[H:H + H // 4].reshape(H // 2, W // 2), i420[H + H // 4:].reshape(H // 2, W // 2)], -1)
        ys, uvs = surface(y, W + 128), surface(uv, W + 128)
        assert lib.fbtool_dsblur_nv12(ctypes.c_void_p(ys.data_ptr()), ys.shape[1], ctypes.c_void_p(uvs.data_ptr()),
                                      uvs.shape[1], W, H, arr, len(objs), stream) == 0
        torch.cuda.synchronize()
        ry, ruv = dsblur.blur_nv12(y, uv, objs)
        for name, g, r in (("Y", read_back(ys, y.shape), ry.numpy()), ("UV", read_back(uvs, uv.shape), ruv.numpy())):
            bad = np.argwhere(g != r)
            assert not len(bad), f"seed {seed}: {len(bad)} NV12 {name} values differ, first {bad[:3].tolist()}"
    assert changed > 10000  # the objects really were blurred


def test_bad_arguments_are_refused(lib):
    assert lib.fbtool_dsblur_rgba(None, 0, W, H, None, 0, None) == -1
    assert lib.fbtool_dsblur_nv12(None, 0, None, 0, W, H, None, 0, None) == -1
