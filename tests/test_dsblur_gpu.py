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
        arr, keep = dsblur.c_objects(objs)
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


NV_FILES = ("nvll_osd/cuosd.cpp", "nvll_osd/cuosd.h", "nvll_osd/memory.hpp", "nvll_osd/textbackend/backend.cpp",
            "nvll_osd/textbackend/backend.hpp", "nvll_osd/cuda/cuosd_kernel.cu", "nvll_osd/cuda/cuosd_kernel.h",
            "nvdsinfer/nvdsinfer_conversion.cu", "nvdsinfer/nvdsinfer_conversion.h")
NV_SRC = REPO.parent / "shared" / "third_party" / "deepstream-9.1" / "src" / "utils"
CLASSES = (("tiny", 0, 32), ("small", 32, 96), ("large", 96, 1e9))  # face box short side, frame pixels


@pytest.fixture(scope="module")
def nvidia(lib, tmp_path_factory):
    """NVIDIA's nvdsosd blur (cuosd_draw_boxblur / cuosd_apply -> render_blur_kernel), built from
    ../shared/third_party at test time through plugins/nvcheck (nothing of NVIDIA's is in the repo)."""
    missing = [f for f in NV_FILES if not (NV_SRC / f).exists()]
    if missing:
        pytest.skip(f"NVIDIA's DeepStream 9.1 sources not found ({NV_SRC / missing[0]})")
    nv = tmp_path_factory.mktemp("nv")
    for f in NV_FILES:  # the layout plugins/nvcheck/Makefile expects
        dst = nv / f.split("/", 1)[1] if f.startswith("nvll_osd/") else nv / Path(f).name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(NV_SRC / f, dst)
    out = tmp_path_factory.mktemp("nvcheck")
    subprocess.run(["make", "-s", "-C", str(REPO / "plugins" / "nvcheck"), f"NV={nv}", f"BUILD_DIR={out}",
                    str(out / "libnvcheck.so")], check=True)
    return ctypes.CDLL(str(out / "libnvcheck.so"))


def _faces_frames():
    """Real 1080p frames with large (head-pose x4), small (classroom x4) and tiny (classroom 3x3) faces."""
    import cv2
    from PIL import Image, ImageSequence

    def clip(name):
        path = REPO.parent / "shared" / "media" / name
        if not path.exists():
            pytest.skip(f"{path} not found")
        with Image.open(path) as im:
            return [np.asarray(f.convert("RGB"))[:, :, ::-1] for f in ImageSequence.Iterator(im)]

    up = [cv2.resize(f, (W, H), interpolation=cv2.INTER_LINEAR) for f in clip(CLIP.name)[::14][:4]]
    room = clip("classroom.gif")
    up += [cv2.resize(f, (W, H), interpolation=cv2.INTER_LINEAR) for f in room[::11][:4]]
    for s in range(2):
        tiles = [cv2.resize(room[(s * 9 + t) % len(room)], (W // 3, H // 3)) for t in range(9)]
        up.append(np.concatenate([np.concatenate(tiles[r * 3:r * 3 + 3], 1) for r in range(3)], 0))
    return up


def _per_class(report):
    out = {}
    for name, lo, hi in CLASSES:
        d = [f["drop"] for f in report.judged if lo <= min(f["box"][2] - f["box"][0], f["box"][3] - f["box"][1]) < hi]
        out[name] = (len(d), sum(x < report.min_drop for x in d), min(d) if d else None)
    return out


def test_nvidia_blur_vs_fbtool_per_face_size(lib, nvidia, recipe, torch_runner):
    """The same faces (the reference's, with the parser's 32x32 masks: 0 outside the contour) blurred by
    nvdsosd's kernel and by fbtool's, judged by the pixel proof per size class. fbtool's passes every
    class; NVIDIA's leaves detail (issue 15's finding: it fails for some size)."""
    import torch

    from toolchain.blur.ops.dsblur import DsBlurObject, c_objects
    from toolchain.blur.proof import ProofReport, check_frame
    from toolchain.detector import detect_batch

    frames = _faces_frames()
    stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
    reports = {"nvidia": ProofReport(), "fbtool": ProofReport()}
    pitch = 4 * W + 512
    for i, f in enumerate(frames):
        d = detect_batch([f], recipe, torch_runner)[0]
        masks = d.masks(recipe.mask.resolution, recipe.mask.feather, recipe.mask.max_tilt_deg)
        objs = [DsBlurObject(float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1]),
                             np.where(m >= 0.5, m, 0.0).astype(np.float32)) for b, m in zip(d.boxes, masks)]
        arr, keep = c_objects(objs)
        rgba = np.concatenate([f, np.full_like(f[..., :1], 255)], -1)
        for name in reports:
            s = surface(rgba, pitch)
            if name == "nvidia":
                rc = nvidia.nvcheck_osd_blur(ctypes.c_void_p(s.data_ptr()), None, W, pitch, H, 0, arr, len(objs), stream)
            else:
                rc = lib.fbtool_dsblur_rgba(ctypes.c_void_p(s.data_ptr()), pitch, W, H, arr, len(objs), stream)
            assert rc == 0, name
            torch.cuda.synchronize()
            check_frame(reports[name], i, f, read_back(s, rgba.shape)[..., :3], d, recipe.mask.max_tilt_deg)
    table = {n: _per_class(r) for n, r in reports.items()}
    print("\nper class (judged faces, leaks, worst drop):", table)
    assert all(table["fbtool"][c][0] > 0 for c, _, _ in CLASSES), table  # every class is present
    assert reports["fbtool"].ok, reports["fbtool"].failures()[:5]
    assert any(table["nvidia"][c][1] > 0 for c, _, _ in CLASSES), table
