"""The graphed CUDA stage (toolchain/blur/pipeline/graphs.py) and its kernels (toolchain/blur/ops/kernels.py).

Here (no GPU) the stage's body runs eagerly on CPU tensors and the Triton kernels run in Triton's
interpreter: the sync-free post-processing must give the reference's detections, the composite must
pass the pixel proof. Tests marked `gpu` run the captured graphs and the compiled kernels on a GPU.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest


@pytest.fixture(scope="module")
def frames():
    """Real frames: several face sizes and tilts, and a frame without faces (people-detection)."""
    from toolchain.media import read_frames

    try:
        import av  # noqa: F401
    except ImportError:  # the GPU machine has no PyAV: OpenCV's FFmpeg reads the same GIFs
        read_frames = _cv2_frames
    return (read_frames("classroom.gif", max_frames=2) + read_frames("head-pose-face-detection-female-and-male.gif",
                                                                     max_frames=2)
            + read_frames("face-demographics-walking.gif", max_frames=2) + read_frames("people-detection.gif",
                                                                                       max_frames=1))


def _cv2_frames(name, max_frames):
    import cv2

    from toolchain.media import resolve_media

    cap = cv2.VideoCapture(str(resolve_media(name)))
    out = []
    while len(out) < max_frames:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    return out


@pytest.fixture(scope="module")
def model(recipe):
    from toolchain.models import build_model

    return build_model(recipe).eval()


@pytest.fixture(scope="module")
def raw(recipe, model, frames):
    """Raw heads of the frames (the reference's own letterbox), as CPU tensors."""
    import torch

    from toolchain.reference.preprocess import preprocess_batch

    x, _ = preprocess_batch(frames, recipe)
    with torch.inference_mode():
        outs = model(torch.from_numpy(x))
    o = recipe.outputs
    return {n: t.float() for n, t in zip([o.boxes, o.scores, o.landmarks], outs)}


def _reference(raw, recipe):
    from toolchain.reference.detections import postprocess, split_batch

    return [postprocess(d, recipe) for d in split_batch({k: v.numpy() for k, v in raw.items()})]


def test_sync_free_postprocess_is_the_reference(recipe, raw):
    from toolchain.blur.pipeline.graphs import candidates_fixed, compact, nms_fixed
    from toolchain.reference.torch_port import TorchDetections, anchors_torch

    boxes, scores, lms, valid, exact = candidates_fixed(raw, recipe, anchors_torch(recipe, "cpu"), cand=256)
    keep, converged = nms_fixed(boxes, valid, recipe.thresholds.nms_iou, recipe.thresholds.top_k)
    dets, fits = compact(TorchDetections(boxes, scores, lms, keep), 64)
    assert bool((exact & converged & fits).all())
    mine = dets.to_numpy()
    ref = _reference(raw, recipe)
    assert sum(len(d) for d in ref) >= 12
    for m, r in zip(mine, ref):
        assert len(m) == len(r)
        if len(r):
            assert np.abs(m.boxes - r.boxes).max() <= 1e-3  # same faces, same order
            assert np.abs(m.scores - r.scores).max() <= 1e-6
            assert np.abs(m.landmarks - r.landmarks).max() <= 1e-3


def test_too_few_candidate_rows_is_flagged_not_hidden(recipe, raw):
    """More candidates above the threshold than rows: the frame is marked inexact."""
    from toolchain.blur.pipeline.graphs import candidates_fixed
    from toolchain.reference.torch_port import anchors_torch

    *_, exact = candidates_fixed(raw, recipe, anchors_torch(recipe, "cpu"), cand=4)
    above = (raw[recipe.outputs.scores][..., 1] > recipe.thresholds.score).sum(1)
    assert exact.tolist() == (above <= 4).tolist()
    assert not bool(exact.all())


def test_fixed_step_nms_equals_greedy_nms_on_crowded_boxes():
    """Random clusters of overlapping boxes (long suppression chains): where the fixed point is reached
    the kept set is the reference greedy NMS's, and too few steps are reported as not converged."""
    import torch

    from toolchain.blur.pipeline.graphs import nms_fixed
    from toolchain.reference.nms import nms

    rng = np.random.default_rng(7)
    n_conv = 0
    for _ in range(20):
        n = 60
        ctr = rng.uniform(0, 200, (n, 2))
        ctr[: n // 2] = ctr[0] + np.cumsum(rng.uniform(-6, 6, (n // 2, 2)), 0)  # a chain of neighbours
        wh = rng.uniform(20, 40, (n, 2))
        boxes = np.concatenate([ctr - wh / 2, ctr + wh / 2], 1).astype(np.float32)
        scores = np.sort(rng.uniform(0.5, 1, n))[::-1].astype(np.float32)  # score-sorted, as candidates are
        ref = set(nms(boxes, scores, 0.4).tolist())
        keep, conv = nms_fixed(torch.from_numpy(boxes)[None], torch.ones((1, n), dtype=torch.bool), 0.4, steps=n)
        assert bool(conv[0])
        assert set(np.nonzero(keep[0].numpy())[0].tolist()) == ref
        few, conv1 = nms_fixed(torch.from_numpy(boxes)[None], torch.ones((1, n), dtype=torch.bool), 0.4, steps=1)
        if bool(conv1[0]):
            n_conv += 1
            assert set(np.nonzero(few[0].numpy())[0].tolist()) == ref  # converged early: still exact
    assert n_conv < 20  # one step is not enough for chains: the flag must have said so


def test_graphed_stage_eager_on_cpu_detects_and_blurs_like_the_reference(recipe, model, frames):
    """The stage's body (letterbox on tensors, model, sync-free post, blur with the composite twin) on
    1080p-upscaled frames: faces match the CPU reference detector, the pixel proof passes, and pixels
    no face's mask reaches are the input's, bit for bit."""
    import cv2
    import torch

    from toolchain.blur.pipeline.graphs import GraphRunner, run_host_frames
    from toolchain.blur.proof import verify_frames
    from toolchain.compare.metrics import match
    from toolchain.detector import detect_batch
    from toolchain.reference.masks import frame_mask
    from toolchain.runners import TorchRunner

    big = np.stack([cv2.resize(f, (960, 540), interpolation=cv2.INTER_LINEAR) for f in frames])
    runner = GraphRunner(model, recipe, batch=4, height=540, width=960, slots=2)
    results, kept = [], []
    info = run_host_frames(runner, torch.from_numpy(big), len(big), results=results, keep=kept)
    assert info["frames"] == len(big) and info["inexact_frames"] == 0
    ref_runner = TorchRunner(recipe)
    errs = []
    for row, f in zip(results, big):
        from toolchain.reference.detections import Detections

        d = detect_batch([f], recipe, ref_runner)[0]
        cand = Detections(np.array([x["box"] for x in row["faces"]], dtype=np.float32).reshape(-1, 4),
                          np.array([x["score"] for x in row["faces"]], dtype=np.float32))
        m = match(d, cand, 0.5, with_masks=False)
        assert m.fp == 0 and m.fn == 0
        errs += m.box_errors
    assert len(errs) >= 12 and max(errs) <= 0.5  # tensor letterbox vs OpenCV's: same faces, < 0.5 px
    report = verify_frames(recipe, list(big), kept, runner=ref_runner)
    assert report.ok, report.failures()
    for f, o, row in zip(big, kept, results):
        boxes = np.array([x["box"] for x in row["faces"]], dtype=np.float32).reshape(-1, 4)
        lms = np.array([x["landmarks"] for x in row["faces"]], dtype=np.float32).reshape(len(boxes), 5, 2)
        untouched = frame_mask(boxes, lms, 960, 540) == 0
        assert np.array_equal(f[untouched], o[untouched])
    assert np.array_equal(kept[-1], big[-1])  # the frame without faces


_KERNEL_CHECK = r"""
import numpy as np, torch
from toolchain.blur.ops import kernels as K
torch.manual_seed(0)
B, H, W, f0 = 2, 72, 150, 2
fr = torch.randint(0, 256, (B, H, W, 3), dtype=torch.uint8)
bl = torch.rand(B, H // f0, W // f0, 3) * 255
prm = torch.tensor([[[40, 30, 20, 25, 0.3], [100, 40, 15, 10, -0.2], [0, 0, 0, 0, 0]],
                    [[75, 35, 30, 30, 0.0], [140, 65, 10, 12, 0.1], [10, 10, 5, 5, 0]]], dtype=torch.float64)
keep = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
tab = K.face_table(prm, keep, 0.15)
a = fr.clone(); K.composite(a, bl, tab, f0, 0.15, force_torch=True)
b = fr.clone(); K.composite(b, bl, tab, f0, 0.15)
assert K.triton_ok(b)
d = (a.int() - b.int()).abs()
assert int((a != fr).sum()) > 5000 and int(d.max()) <= 1 and int((d > 0).sum()) < 50, (int(d.max()), int((d > 0).sum()))
assert torch.equal(b[0, :, 125:], fr[0, :, 125:])  # no face of frame 0 reaches its right strip
nv = torch.randint(0, 256, (B, H * 3 // 2, W), dtype=torch.uint8)
assert torch.equal(K.nv12_to_bgr(nv, force_torch=True), K.nv12_to_bgr(nv))
print("kernels OK")
"""


def test_triton_kernels_equal_their_torch_twins_in_the_interpreter():
    pytest.importorskip("triton", reason="Triton not installed here (scripts/setup.sh installs it for this test)")
    env = dict(os.environ, TRITON_INTERPRET="1")
    r = subprocess.run([sys.executable, "-c", _KERNEL_CHECK], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "kernels OK" in r.stdout


def test_nv12_twin_matches_opencv_bt601():
    """The NV12 conversion is the BT.601 limited-range one OpenCV uses (an independent implementation)."""
    import cv2
    import torch

    from toolchain.blur.ops.kernels import nv12_to_bgr_torch

    rng = np.random.default_rng(3)
    h, w = 48, 64
    nv = rng.integers(16, 236, (h * 3 // 2, w), dtype=np.uint8)
    ref = cv2.cvtColor(nv, cv2.COLOR_YUV2BGR_NV12)
    got = nv12_to_bgr_torch(torch.from_numpy(nv)[None])[0].numpy()
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 2


@pytest.mark.gpu
def test_graph_replay_equals_the_eager_body_on_the_gpu(recipe, model, frames):
    import cv2
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    import copy

    from toolchain.blur.pipeline.graphs import GraphedStage

    m = copy.deepcopy(model).to("cuda").half().to(memory_format=torch.channels_last)
    big = torch.from_numpy(np.stack([cv2.resize(f, (1920, 1080)) for f in frames[:4]])).cuda()
    g = GraphedStage(m, recipe, 4, 1080, 1920, torch.float16)
    e = GraphedStage(m, recipe, 4, 1080, 1920, torch.float16, use_graph=False)
    for st in (g, e):
        st.src.copy_(big)
    og, oe = g.replay(), e.replay()
    torch.cuda.synchronize()
    assert torch.equal(og.keep, oe.keep) and bool(og.exact.all())
    assert torch.allclose(og.boxes[og.keep], oe.boxes[oe.keep], atol=1e-3)
    assert (g.frames.int() - e.frames.int()).abs().max() <= 1


def test_conv_bn_folding_keeps_fp32_and_rescues_fp16(recipe, model, frames):
    """The CUDA engine folds conv + BatchNorm (blur/precision.py): fp32 heads unchanged; in fp16 the
    raw-pixel stem no longer drowns the signal (plain .half() is measured too: it is far off)."""
    import copy

    import torch

    from toolchain.blur.precision import fuse_conv_bn
    from toolchain.reference.preprocess import preprocess_batch

    x = torch.from_numpy(preprocess_batch(frames[:2], recipe)[0])
    with torch.inference_mode():
        ref = model(x)
        fused = fuse_conv_bn(copy.deepcopy(model))
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())

        def rel(outs):
            return max(float((a - b.float()).norm() / a.norm()) for a, b in zip(ref, outs))

        assert rel(fused(x)) < 1e-5
        try:
            half_fused = fused.half()(x.half())
            half_plain = copy.deepcopy(model).half()(x.half())
        except RuntimeError as exc:  # a CPU build without fp16 convolutions
            pytest.skip(f"no fp16 conv on this CPU: {exc}")
    assert rel(half_fused) < 0.05
    assert rel(half_plain) > 0.3


def test_fp16_heads_run_in_fp32_so_scores_do_not_tie(recipe, frames):
    """precision.heads_fp32 on an fp16 body: the heads' weights and all three outputs are fp32, the body
    stays fp16, and the scores are no longer on fp16's grid (steps of ~0.0005 near 1, where two
    overlapping candidates of one face tied and NMS kept the other box: 13.7 px on the H200)."""
    import torch

    from toolchain.blur.precision import fuse_conv_bn, heads_fp32
    from toolchain.models import build_model
    from toolchain.reference.preprocess import preprocess_batch

    x = torch.from_numpy(preprocess_batch(frames[:2], recipe)[0])
    m = heads_fp32(fuse_conv_bn(build_model(recipe).eval()).half())
    assert m.body.parameters().__next__().dtype == torch.float16
    assert all(p.dtype == torch.float32 for h in (m.ClassHead, m.BboxHead, m.LandmarkHead) for p in h.parameters())
    with torch.inference_mode():
        loc, scores, ldm = m(x.half())
    assert loc.dtype == scores.dtype == ldm.dtype == torch.float32
    s = scores[..., 1][scores[..., 1] > recipe.thresholds.score]
    assert s.numel() > 10
    off_grid = (s.half().float() != s).float().mean()
    assert off_grid > 0.9  # fp16 softmax outputs would all be on the grid
    assert heads_fp32(m) is m and type(m.ClassHead[0]).__name__ == "Fp32"  # idempotent
