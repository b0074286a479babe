"""The nvinfer emulation: the emitted config run on real frames, against the PyTorch reference.

The reference is toolchain.detector.detect_frames with TorchRunner (fp32). The emulation reads
only the config (preprocessing keys, onnx-file, parser, clustering), so a wrong config is caught.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

MODEL = "retinaface_mnet025"


@pytest.fixture(scope="module")
def frames(recipe):
    from toolchain.frames import sample_frames

    return [f for _, _, f in sample_frames(recipe.validation_media, per_clip=3, step=7)]


@pytest.fixture(scope="module")
def reference(recipe, torch_runner, frames):
    from toolchain.detector import detect_frames

    return detect_frames(frames, recipe, torch_runner)


@pytest.fixture(scope="module")
def emu_run(exported, tmp_path_factory):
    """A run folder of its own with the session's export (other tests record stages in `exported`)."""
    from toolchain.runfolder import RunFolder

    src, info = exported
    run = tmp_path_factory.mktemp("emurun")
    shutil.copy(src / "model.onnx", run / "model.onnx")
    RunFolder(run).record("export", {"onnx": run / "model.onnx"}, info)
    return run


def _config(recipe, run, ds, mask=True) -> Path:
    from toolchain.deepstream import emit

    emit(recipe, run, ds_dir=ds, mask=mask)
    return ds / f"config_infer_primary_{MODEL}.txt"


def _compare(reference, objects, frames):
    from toolchain.compare.metrics import compare_detections
    from toolchain.nvinfer.emulation import to_detections

    cands = [to_detections(o, f.shape[1], f.shape[0]) for o, f in zip(objects, frames)]
    return compare_detections(reference, cands, with_masks=False)


def _mask_ious(reference, objects, frames, match_iou=0.5):
    """Mask IoU of each emulated face matched to a reference face, matched as toolchain.compare.metrics.match
    does (by descending score, to the unmatched reference face of highest box IoU >= 0.5)."""
    from toolchain.nvinfer.emulation import pair_mask_iou, to_detections
    from toolchain.reference.nms import iou_matrix

    out = []
    for objs, ref, f in zip(objects, reference, frames):
        if not objs or not len(ref):
            continue
        ious = iou_matrix(to_detections(objs, f.shape[1], f.shape[0]).boxes, ref.boxes)
        used = np.zeros(len(ref), bool)
        for ci in sorted(range(len(objs)), key=lambda i: -objs[i].confidence):
            row = np.where(used, -1.0, ious[ci])
            ri = int(np.argmax(row))
            if row[ri] >= match_iou:
                used[ri] = True
                out.append(pair_mask_iou(objs[ci], ref, ri))
    return np.asarray(out)


# --- geometry and config semantics ------------------------------------------------------------
def test_letterbox_geometry_is_nvinfers():
    from toolchain.nvinfer.emulation import nvinfer_letterbox

    lb = nvinfer_letterbox(1920, 1080, 640, 384, True, False)
    assert (lb.scaled_w, lb.scaled_h, lb.pad_x, lb.pad_y) == (640, 360, 0, 0)
    lb = nvinfer_letterbox(1920, 1080, 640, 384, True, True)
    assert (lb.pad_x, lb.pad_y) == (0, 12)
    # nvinfer truncates the scaled size (640 * 768 / 1366 = 359.8 -> 359) and uses even source sizes.
    lb = nvinfer_letterbox(1366, 768, 640, 384, True, False)
    assert (lb.scaled_w, lb.scaled_h) == (640, 359)
    assert (nvinfer_letterbox(641, 481, 640, 384, True, False).frame_w, 481 & ~1) == (640, 480)
    assert nvinfer_letterbox(480, 270, 640, 384, False, False).scaled_h == 384


def test_mapping_filters_and_topk(recipe, emu_run, tmp_path):
    """Parser objects in network pixels -> frame pixels, pre-cluster-threshold and topk per class."""
    from toolchain.nvinfer.emulation import NvInferEmulator, nvinfer_letterbox

    cfg = _config(recipe, emu_run, tmp_path / "ds")
    text = cfg.read_text().replace("symmetric-padding=0", "symmetric-padding=1").replace("topk=750", "topk=2")
    cfg.write_text(text)

    class Stub:
        def parse_mask(self, layers, net_w, net_h, thresholds, func=None, order=None):
            assert (net_w, net_h, func) == (640, 384, "NvDsInferParseFbtoolFaceMask")
            assert thresholds == [recipe.thresholds.score]
            m = np.ones((4, 4), np.float32)
            obj = {"class_id": 0, "left": 100.0, "top": 50.0, "width": 64.0, "height": 32.0,
                   "mask": m, "mask_width": 4, "mask_height": 4}
            return [dict(obj, confidence=0.9), dict(obj, confidence=0.3), dict(obj, confidence=0.8, left=300.0),
                    dict(obj, confidence=0.95, left=500.0), dict(obj, class_id=3, confidence=0.99)]

    emu = NvInferEmulator(cfg, parser=Stub())
    objs = emu.postprocess({}, nvinfer_letterbox(1920, 1080, 640, 384, True, True))
    # 0.3 is below pre-cluster-threshold, class 3 is beyond num-detected-classes, topk=2 keeps the best two.
    assert [o.confidence for o in objs] == pytest.approx([0.95, 0.9])
    o = objs[1]  # left = (100 - 0) * 3, top = (50 - 12) * 3 with a 1/3 scale and 12 px top padding
    assert (o.left, o.top, o.width, o.height) == pytest.approx((300.0, 114.0, 192.0, 96.0))
    assert o.mask.shape == (4, 4) and o.mask_threshold == 0.5


def test_instance_masks_need_cluster_mode_4(recipe, emu_run, tmp_path):
    from toolchain.errors import FbtoolError
    from toolchain.nvinfer.emulation import NvInferEmulator
    from toolchain.nvinfer.emulation.config import NvInferConfig

    cfg = _config(recipe, emu_run, tmp_path / "ds")
    c = NvInferEmulator(cfg, parser=object()).config
    bad = NvInferConfig(c.path, {**c.props, "cluster-mode": 2}, c.class_attrs)
    with pytest.raises(FbtoolError, match="Invalid cluster mode for instance mask detection"):
        NvInferEmulator(bad, parser=object())


# --- end to end, real frames -------------------------------------------------------------------
def test_emulation_with_reference_stand_in_matches_torch(recipe, emu_run, tmp_path, frames, reference):
    """Preprocessing from the config, NMS (no-mask config) / parser-side NMS (mask config), mapping."""
    from toolchain.nvinfer.emulation import NvInferEmulator, ReferenceParser

    tol = recipe.tolerances
    for mask in (True, False):
        cfg = _config(recipe, emu_run, tmp_path / f"ds{mask}", mask=mask)
        objects = NvInferEmulator(cfg, parser=ReferenceParser(recipe)).infer(frames)
        s, _ = _compare(reference, objects, frames)
        assert s.tp >= 20, "too few faces to judge"
        assert s.f1 >= tol.detection_f1 and s.mean_iou >= tol.mean_iou, s
        assert s.max_box_px <= tol.box_px, s
        if mask:
            mi = _mask_ious(reference, objects, frames)
            assert len(mi) == s.tp and mi.min() >= tol.mask_iou, mi


def test_a_wrong_config_is_caught(recipe, emu_run, tmp_path, frames, reference):
    """The emulation preprocesses from the CONFIG: a wrong colour order or padding shows up."""
    from toolchain.nvinfer.emulation import NvInferEmulator, ReferenceParser

    cfg = _config(recipe, emu_run, tmp_path / "ds")
    for good, bad in (("model-color-format=1", "model-color-format=0"), ("symmetric-padding=0", "symmetric-padding=1")):
        wrong = cfg.with_name(f"wrong_{bad.split('=')[0]}.txt")
        wrong.write_text(cfg.read_text().replace(good, bad))
        s, _ = _compare(reference, NvInferEmulator(wrong, parser=ReferenceParser(recipe)).infer(frames), frames)
        assert s.f1 < 0.99 or s.max_box_px > 1.0 or s.max_score_delta > 0.01, (bad, s)


def _parser_missing() -> str | None:
    if importlib.util.find_spec("toolchain.parser") is None:
        return "toolchain.parser (the C++ parser's build/harness) is not in this tree"
    for tool in ("g++", "make", "nm"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed: the parser cannot be built"
    return None


@pytest.fixture(scope="module")
def compiled_run(recipe, emu_run, tmp_path_factory):
    reason = _parser_missing()
    if reason:
        pytest.skip(reason)
    from toolchain.onnx_meta import get_metadata
    from toolchain.parser import build_parser
    from toolchain.runfolder import RunFolder

    run = tmp_path_factory.mktemp("compiled")
    shutil.copy(emu_run / "model.onnx", run / "model.onnx")
    rf = RunFolder(run)
    rf.record("export", {"onnx": run / "model.onnx"})
    b = build_parser(recipe, run, meta=get_metadata(run / "model.onnx"))
    rf.record("build-parser", {"lib": b.lib, "harness": b.harness}, {"ds_major": b.ds_major})
    return run


def test_emulation_with_compiled_parser_bbox(recipe, compiled_run, tmp_path, frames, reference):
    """network-type=0: the real NvDsInferParseFbtoolFace through its C ABI, nvinfer's NMS (cluster-mode=2)."""
    from toolchain.nvinfer.emulation import NvInferEmulator

    cfg = _config(recipe, compiled_run, tmp_path / "ds", mask=False)
    emu = NvInferEmulator(cfg, parser="compiled")
    assert emu.parser.lib_path.resolve() == (compiled_run / "parser" / "libnvdsinfer_fbtool.so").resolve()
    s, _ = _compare(reference, emu.infer(frames), frames)
    assert s.tp >= 20 and s.f1 >= recipe.tolerances.detection_f1, s
    assert s.max_box_px <= recipe.tolerances.box_px, s


def test_emulation_with_compiled_parser_masks(recipe, compiled_run, tmp_path, frames, reference):
    """network-type=3: the real NvDsInferParseFbtoolFaceMask. nvinfer runs no NMS on instance masks
    (cluster-mode=4 only), so duplicates here mean the parser stopped clustering."""
    from toolchain.nvinfer.emulation import NvInferEmulator

    cfg = _config(recipe, compiled_run, tmp_path / "ds", mask=True)
    objects = NvInferEmulator(cfg, parser="compiled").infer(frames)
    s, _ = _compare(reference, objects, frames)
    assert s.tp >= 20 and s.f1 >= recipe.tolerances.detection_f1, s
    assert s.max_box_px <= recipe.tolerances.box_px, s
    mi = _mask_ious(reference, objects, frames)
    assert len(mi) == s.tp and mi.min() >= recipe.tolerances.mask_iou, mi


def test_emulation_decoded_layout_with_compiled_parser(recipe, compiled_run, tmp_path, frames, reference):
    """Surgery's decode-in-graph ONNX (det_boxes/det_scores/det_landmarks, top-k) is what the config
    deploys when present; the same parser reads it and the pipeline still matches PyTorch."""
    import dataclasses

    from toolchain.nvinfer.emulation import NvInferEmulator
    from toolchain.runfolder import RunFolder
    from toolchain.surgery.stage import surgery

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(compiled_run / "model.onnx", run / "model.onnx")
    rf = RunFolder(run)
    rf.record("export", {"onnx": run / "model.onnx"})
    built = RunFolder(compiled_run)
    rf.record("build-parser", {k: built.artifact("build-parser", k).resolve() for k in ("lib", "harness")},
              built.stage("build-parser")["info"])
    surgery(recipe, run, settings=dataclasses.replace(recipe.surgery, decode=True, top_k=1000), check=False)
    cfg = _config(recipe, run, tmp_path / "ds", mask=True)
    assert "output-blob-names=det_boxes;det_scores;det_landmarks" in cfg.read_text()
    objects = NvInferEmulator(cfg, parser="compiled").infer(frames)
    s, _ = _compare(reference, objects, frames)
    assert s.tp >= 20 and s.f1 >= recipe.tolerances.detection_f1, s
    mi = _mask_ious(reference, objects, frames)
    assert len(mi) == s.tp and mi.min() >= recipe.tolerances.mask_iou, mi
