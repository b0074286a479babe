"""The dense CUDA blur (toolchain/blur/ops/dense.py), run on CPU tensors: its vectorised union mask is
the reference's (toolchain.reference.masks.frame_mask), and its blur passes the pixel proof."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def batch(recipe, torch_runner):
    """Real frames (faces of several sizes, tilted eye lines, a frame without faces) and their
    detections from the torch post-processing, in frame pixels."""
    import torch

    from toolchain.media import read_frames
    from toolchain.reference.preprocess import preprocess_batch
    from toolchain.reference.torch_port import anchors_torch, postprocess_torch, to_frame_torch

    frames = (read_frames("classroom.gif", max_frames=2) + read_frames("head-pose-face-detection-female-and-male.gif",
                                                                       max_frames=2)
              + read_frames("people-detection.gif", max_frames=1))
    x, lbs = preprocess_batch(frames, recipe)
    out = torch_runner.infer({recipe.input.name: x})
    td = to_frame_torch(postprocess_torch({k: torch.from_numpy(v) for k, v in out.items()}, recipe,
                                          anchors_torch(recipe, "cpu")), lbs[0])
    return frames, td


def _mask(td, h, w, f0, scale=1.0):
    import torch

    from toolchain.blur.ops.dense import union_mask
    from toolchain.blur.ops.torch import ellipse_params_torch

    boxes = td.boxes * scale
    lms = None if td.landmarks is None else td.landmarks * scale
    prm = ellipse_params_torch(boxes, lms, 45.0)
    grid = 2 * int(np.ceil(1.15 * float(prm[..., 2:4].max()) / f0)) + 8
    m = union_mask(prm, td.keep, -(-h // f0), -(-w // f0), f0, 0.15, grid)
    if f0 > 1:
        m = torch.nn.functional.interpolate(m[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
    return m.numpy(), boxes.numpy(), None if lms is None else lms.numpy()


def test_union_mask_is_the_reference_frame_mask(batch):
    from toolchain.reference.masks import frame_mask

    frames, td = batch
    h, w = frames[0].shape[:2]
    got, boxes, lms = _mask(td, h, w, 1)
    keep = td.keep.numpy()
    assert keep.sum() >= 12
    for i in range(len(frames)):
        ref = frame_mask(boxes[i][keep[i]], None if lms is None else lms[i][keep[i]], w, h)
        assert np.abs(got[i] - ref).max() < 1e-4
        assert (got[i] > 0).sum() == (ref > 0).sum()


def test_union_mask_on_the_quarter_grid_stays_close_at_1080p(batch):
    """f0 = 4 (what 1080p uses): the mask is sampled every 4 px and upsampled bilinearly."""
    from toolchain.reference.masks import frame_mask, mask_iou

    frames, td = batch
    h, w = frames[0].shape[0] * 4, frames[0].shape[1] * 4
    got, boxes, lms = _mask(td, h, w, 4, scale=4.0)
    keep = td.keep.numpy()
    for i in range(4):  # the frames with faces
        ref = frame_mask(boxes[i][keep[i]], None if lms is None else lms[i][keep[i]], w, h)
        d = np.abs(got[i] - ref)
        assert d.max() < 0.25 and d.mean() < 1e-3
        assert mask_iou(got[i], ref) > 0.97


def test_dense_blur_passes_the_proof_and_leaves_the_rest_untouched(recipe, batch):
    import torch

    from toolchain.blur.ops.dense import blur_batch_dense
    from toolchain.blur.proof import verify_frames
    from toolchain.reference.masks import frame_mask

    frames, td = batch
    t = torch.from_numpy(np.stack(frames)).clone()
    assert blur_batch_dense(t, td) == int(td.keep.sum())
    out = t.numpy()
    report = verify_frames(recipe, frames, list(out))
    assert report.ok, report.failures()
    assert len(report.judged) >= 8
    h, w = frames[0].shape[:2]
    for f, o, d in zip(frames, out, td.to_numpy()):
        untouched = frame_mask(d.boxes, d.landmarks, w, h) == 0
        assert np.array_equal(f[untouched], o[untouched])  # m = 0: the input, bit for bit
    assert np.array_equal(out[-1], frames[-1])  # the frame without faces


def test_dense_blur_of_a_batch_without_faces_is_a_no_op(batch):
    import torch

    from toolchain.blur.ops.dense import blur_batch_dense
    from toolchain.reference.torch_port import TorchDetections

    frames, td = batch
    t = torch.from_numpy(np.stack(frames)).clone()
    none = TorchDetections(td.boxes, td.scores, td.landmarks, torch.zeros_like(td.keep))
    assert blur_batch_dense(t, none) == 0
    assert np.array_equal(t.numpy(), np.stack(frames))


def test_cuda_blur_mode_selection(monkeypatch, recipe):
    """The CUDA blur is chosen by the job's option (make_engine / --cuda-blur), not the environment."""
    from toolchain.blur.engines import make_engine
    from toolchain.blur.ops import DEFAULT_CUDA_BLUR
    from toolchain.blur.ops.dense import blur_batch_dense
    from toolchain.blur.ops.torch import blur_batch
    from toolchain.blur.pipeline.stages import cuda_blur_fn
    from toolchain.errors import FbtoolError

    assert cuda_blur_fn() is {"dense": blur_batch_dense, "crops": blur_batch}[DEFAULT_CUDA_BLUR]
    assert cuda_blur_fn("crops") is blur_batch
    assert cuda_blur_fn("dense") is blur_batch_dense
    monkeypatch.setenv("FBTOOL_CUDA_BLUR", "crops")  # the old switch: no longer read
    assert cuda_blur_fn() is {"dense": blur_batch_dense, "crops": blur_batch}[DEFAULT_CUDA_BLUR]
    eng = make_engine(recipe, "torch", "cpu", tensor_path=True, cuda_blur="crops")
    assert eng.cuda_blur == "crops"
    with pytest.raises(FbtoolError, match="unknown CUDA blur mode"):
        cuda_blur_fn("fast")
    with pytest.raises(FbtoolError, match="unknown CUDA blur mode"):
        make_engine(recipe, "torch", "cpu", tensor_path=True, cuda_blur="fast")
