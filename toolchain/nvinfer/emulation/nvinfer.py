"""Gst-nvinfer emulated in Python: config in, the object metadata DeepStream would attach out.

Per frame, as gstnvinfer + nvdsinfer do it (facts in docs/deepstream.md):
0. With `mux=(W, H)` (validate passes the deployment's, nvinfer.names.STREAMMUX_*), the frame is the
   one nvstreammux hands over: the source stretched to W x H (enable-padding=0). The emulation scales
   the source straight into the network input with that frame's geometry (one resampling where the
   GPU does two), runs 1-6 on the W x H frame, and maps the objects back to the source by W/w, H/h.
   Without it the given frame is what nvinfer receives.
1. Scale the frame to the network size. With maintain-aspect-ratio=1 the scaled size is
   (net_w, trunc(net_w * H / W)) when that fits, else (trunc(net_h * W / H), net_h); the source
   width/height are first rounded down to even numbers; padding is black, right/bottom, or split
   (left/top = floor(pad / 2)) with symmetric-padding=1.
2. y = net-scale-factor * (x - offsets[c]) in the model-color-format order (the CONFIG's values).
3. Run the model (onnxruntime on onnx-file; a TensorRT engine where a runner for it exists).
4. Hand each frame's output layers (batch axis removed, model output order) to the custom parser.
5. Drop objects below their class's pre-cluster-threshold (or of unknown class); cluster per
   cluster-mode: 2 = per-class greedy NMS (keep while IoU <= nms-iou-threshold), then
   post-cluster-threshold and topk; 4 = per-class topk only. Instance segmentation (network-type=3)
   accepts cluster-mode=4 only, like nvinfer. Clustering happens in network-input pixels.
6. Map boxes to the frame as attach_metadata_detector (gstnvinfer_meta_utils.cpp) does:
   left = (left - pad_left) / ratio_x, width /= ratio_x (ratio = scaled size / source size); a
   negative left/top becomes 0 (width/height unchanged); detected-min/max-w/h; then with
   crop-objects-to-roi-boundary=1 the box is cropped to the frame (and roi offsets), else a box
   passing the bottom edge (frame height - roi-bottom-offset) or above roi-top-offset is DROPPED.
   Masks are attached (output-instance-mask=1 only) as the parser made them: mask_width x
   mask_height probabilities covering the parser's box.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import FbtoolError
from ...reference.preprocess import Letterbox, letterbox_geometry, normalize, scale_frame
from .config import NvInferConfig, read_config

CLUSTER_NAMES = {0: "groupRectangles", 1: "DBSCAN", 2: "NMS", 3: "DBSCAN+NMS hybrid", 4: "none"}


@dataclass
class ObjectMeta:
    """What nvinfer attaches per object (NvDsObjectMeta: rect_params, confidence, class_id, mask_params)."""

    class_id: int
    confidence: float
    left: float
    top: float
    width: float
    height: float
    mask: np.ndarray | None = None  # float32 [mask_height, mask_width] over the box
    mask_threshold: float = 0.0

    @property
    def box(self) -> tuple[float, float, float, float]:
        return self.left, self.top, self.left + self.width, self.top + self.height


def nvinfer_letterbox(frame_w: int, frame_h: int, net_w: int, net_h: int, keep_aspect: bool,
                      symmetric: bool) -> Letterbox:
    """gstnvinfer's get_converted_buffer geometry (source dims rounded down to even, sizes truncated)."""
    sw, sh = frame_w & ~1, frame_h & ~1
    if not keep_aspect:
        return Letterbox(sw, sh, net_w, net_h, 0, 0)
    hdest = net_w * sh / sw
    if hdest <= net_h:
        dw, dh = net_w, int(hdest)
    else:
        dw, dh = int(net_h * sw / sh), net_h
    if symmetric:
        return Letterbox(sw, sh, dw, dh, (net_w - dw) // 2, (net_h - dh) // 2)
    return Letterbox(sw, sh, dw, dh, 0, 0)


def scale_like_nvinfer(frame: np.ndarray, net_w: int, net_h: int, keep_aspect: bool, symmetric: bool,
                       interpolation: str) -> tuple[np.ndarray, Letterbox]:
    h, w = frame.shape[:2]
    lb = nvinfer_letterbox(w, h, net_w, net_h, keep_aspect, symmetric)
    if (w, h) == (lb.frame_w, lb.frame_h) and lb == letterbox_geometry(w, h, net_w, net_h, keep_aspect, symmetric):
        return scale_frame(frame, net_w, net_h, keep_aspect, symmetric, interpolation)
    # Geometry differs from preprocess.py's rounding (odd frame sizes, non-integer ratios): follow nvinfer.
    import cv2

    src = frame[: lb.frame_h, : lb.frame_w]
    interp = cv2.INTER_LINEAR if interpolation == "bilinear" else cv2.INTER_NEAREST
    canvas = np.zeros((net_h, net_w, 3), dtype=np.uint8)
    canvas[lb.pad_y:lb.pad_y + lb.scaled_h, lb.pad_x:lb.pad_x + lb.scaled_w] = cv2.resize(
        src, (lb.scaled_w, lb.scaled_h), interpolation=interp)
    return canvas, lb


class NvInferEmulator:
    """Runs frames through the emitted config as nvinfer would, with the real parser (or a stand-in)."""

    def __init__(self, config: str | Path | NvInferConfig, parser=None, runner=None, ds_version: str = "9.1",
                 mux: tuple[int, int] | None = None):
        self.mux = None if mux is None else (int(mux[0]), int(mux[1]))
        self.config = config if isinstance(config, NvInferConfig) else read_config(config, ds_version)
        c = self.config
        dims = c.infer_dims
        if dims is None:
            raise FbtoolError(f"{c.path} has no infer-dims", "the emulation needs C;H;W of the network input")
        self.channels, self.net_h, self.net_w = dims
        if c.get("network-input-order", 0) != 0:
            raise FbtoolError("network-input-order=1 (NHWC) is not emulated", "fbtool models are NCHW")
        fmt = c.get("model-color-format", 0)
        if fmt == 2:
            raise FbtoolError("model-color-format=2 (GRAY) is not emulated", "fbtool models take RGB or BGR")
        self.color = "bgr" if fmt == 1 else "rgb"
        self.scale = float(c.get("net-scale-factor", 1.0))
        offsets = c.get("offsets") or [0.0] * self.channels
        if len(offsets) != self.channels:
            raise FbtoolError(f"offsets has {len(offsets)} values for {self.channels} channels",
                              "nvinfer needs one offset per channel")
        self.offsets = [float(v) for v in offsets]
        self.keep_aspect = bool(c.get("maintain-aspect-ratio", False))
        self.symmetric = bool(c.get("symmetric-padding", False))
        self.interpolation = "nearest" if c.get("scaling-filter", 0) == 0 else "bilinear"
        self.batch = int(c.get("batch-size", 1))
        self.mask_mode = c.network_type == 3
        if c.network_type not in (0, 3):
            raise FbtoolError(f"network-type={c.network_type} is not emulated", "fbtool emits 0 (detector) or 3")
        if self.mask_mode:
            self.func = c.get("parse-bbox-instance-mask-func-name")
            if c.cluster_mode != 4:
                # gst_nvinfer_start refuses first (output-instance-mask=1); nvdsinfer's "Invalid cluster
                # mode for instance mask detection" would only come after it.
                first = (f"Instance mask output not supported with cluster mode {c.cluster_mode}"
                         if c.get("output-instance-mask", False) else "Invalid cluster mode for instance mask detection")
                raise FbtoolError(f"cluster-mode={c.cluster_mode} with network-type=3: nvinfer fails with "
                                  f"'{first}'", "use cluster-mode=4")
        else:
            self.func = c.get("parse-bbox-func-name")
            if c.cluster_mode not in (2, 4):
                raise FbtoolError(f"cluster-mode={c.cluster_mode} ({CLUSTER_NAMES.get(c.cluster_mode)}) is not emulated",
                                  "the emulation implements 2 (NMS) and 4 (none)")
        if not self.func:
            raise FbtoolError(f"{c.path} names no custom parse function", "nvinfer needs one for fbtool models")
        self.runner = runner or self._default_runner()
        self.parser = self.harness_for(self.config) if parser == "compiled" else parser

    @staticmethod
    def harness_for(config: NvInferConfig):
        """The compiled parser at the config's custom-lib-path, driven through the C++ harness that
        `fbtool build-parser` builds beside it (the same g++, the same ABI header)."""
        from ..harness import ParserHarness
        from ..names import HARNESS_LIB

        lib = config.file("custom-lib-path")
        if lib is None or not lib.is_file():
            raise FbtoolError(f"custom-lib-path {lib} does not exist", "run `fbtool build-parser` and emit the "
                              "config again (`fbtool deepstream`) so that it points at the built library")
        harness = lib.parent / HARNESS_LIB
        if not harness.is_file():
            raise FbtoolError(f"no {HARNESS_LIB} beside {lib}", "build the parser with `fbtool build-parser`")
        return ParserHarness((lib, harness))

    def _default_runner(self):
        """The engine at model-engine-file where it exists and TensorRT runs here (its outputs then
        come in engine I/O order, as nvinfer hands them over), else onnxruntime on onnx-file."""
        from ...runners import available, open_runner

        engine = self.config.file("model-engine-file")
        if engine is not None and engine.is_file() and available("tensorrt")[0]:
            return open_runner("tensorrt", engine)
        onnx = self.config.file("onnx-file")
        if onnx is None:
            raise FbtoolError(f"{self.config.path} has no onnx-file", "the emulation runs the ONNX with onnxruntime")
        return open_runner("onnxruntime", onnx)

    # --- the pipeline -------------------------------------------------------------------------
    def preprocess(self, frame: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """The network input and its geometry; with `mux`, the geometry of the streammux frame."""
        canvas, lb = scale_like_nvinfer(frame, self.net_w, self.net_h, self.keep_aspect, self.symmetric,
                                        self.interpolation)
        if self.mux is not None:
            mlb = nvinfer_letterbox(*self.mux, self.net_w, self.net_h, self.keep_aspect, self.symmetric)
            if (mlb.scaled_w, mlb.scaled_h, mlb.pad_x, mlb.pad_y) != (lb.scaled_w, lb.scaled_h, lb.pad_x, lb.pad_y):
                import cv2

                interp = cv2.INTER_LINEAR if self.interpolation == "bilinear" else cv2.INTER_NEAREST
                canvas = np.zeros((self.net_h, self.net_w, 3), dtype=np.uint8)
                canvas[mlb.pad_y:mlb.pad_y + mlb.scaled_h, mlb.pad_x:mlb.pad_x + mlb.scaled_w] = cv2.resize(
                    frame, (mlb.scaled_w, mlb.scaled_h), interpolation=interp)
            lb = mlb
        return normalize(canvas, self.color, self.offsets, self.scale), lb

    def infer(self, frames: list[np.ndarray]) -> list[list[ObjectMeta]]:
        if self.parser is None:
            raise FbtoolError("no parser given to the emulation", "pass ParserHarness(build) or a stand-in")
        out: list[list[ObjectMeta]] = []
        for i in range(0, len(frames), self.batch):
            chunk = frames[i:i + self.batch]
            tensors, boxes = zip(*(self.preprocess(f) for f in chunk))
            outputs = self.runner.infer({self.runner.input_name: np.stack(tensors)})
            names = list(self.runner.output_names)
            for b, lb in enumerate(boxes):
                layers = {n: np.ascontiguousarray(outputs[n][b]) for n in names}
                h, w = chunk[b].shape[:2]
                if self.mux is None:
                    out.append(self.postprocess(layers, lb, (w, h)))
                else:
                    out.append([_scaled(o, w / self.mux[0], h / self.mux[1])
                                for o in self.postprocess(layers, lb, self.mux)])
        return out

    def postprocess(self, layers: dict[str, np.ndarray], lb: Letterbox,
                    frame_size: tuple[int, int] | None = None) -> list[ObjectMeta]:
        attrs = self.config.class_attrs
        thresholds = [a.pre_cluster_threshold for a in attrs]
        call = self.parser.parse_mask if self.mask_mode else self.parser.parse_bbox
        objs = call(layers, self.net_w, self.net_h, thresholds, func=self.func)
        if objs is None:
            raise FbtoolError(f"the parser {self.func} returned false (nvinfer: 'Failed to parse bboxes')",
                              "the output layers do not match what the parser expects")
        n = len(attrs)
        objs = [o for o in objs if 0 <= int(o["class_id"]) < n
                and o["confidence"] >= attrs[int(o["class_id"])].pre_cluster_threshold]
        clustered: list[dict] = []
        for c in range(n):
            mine = [o for o in objs if int(o["class_id"]) == c]
            a = attrs[c]
            if self.config.cluster_mode == 2:
                mine = [o for o in _nms(mine, a.nms_iou_threshold) if o["confidence"] > a.post_cluster_threshold]
            clustered += _topk(mine, a.topk)
        return [m for m in (self._to_frame(o, lb, frame_size) for o in clustered) if m is not None]

    def _to_frame(self, o: dict, lb: Letterbox, frame_size: tuple[int, int] | None = None) -> ObjectMeta | None:
        """gstnvinfer_meta_utils.cpp, attach_metadata_detector: scale back, clamp left/top at 0 (the
        width/height are NOT reduced), the min/max size filters, then either crop the box to the frame
        (crop-objects-to-roi-boundary=1) or drop it when it passes the bottom edge (or starts above
        roi-top-offset). `frame_size` is the surface nvinfer received (input_surf_params)."""
        a = self.config.class_attrs[int(o["class_id"])]
        fw, fh = frame_size or (lb.frame_w, lb.frame_h)
        f32 = np.float32
        left = f32((f32(o["left"]) - lb.pad_x) / lb.sx)
        top = f32((f32(o["top"]) - lb.pad_y) / lb.sy)
        width, height = f32(f32(o["width"]) / lb.sx), f32(f32(o["height"]) / lb.sy)
        top, left = max(top, f32(0)), max(left, f32(0))
        if width < a.detected_min_w or height < a.detected_min_h:
            return None
        if (a.detected_max_w > 0 and width > a.detected_max_w) or (a.detected_max_h > 0 and height > a.detected_max_h):
            return None
        if self.config.get("crop-objects-to-roi-boundary", False):
            if top < a.roi_top_offset:
                top = f32(a.roi_top_offset)
            if left + width >= fw:
                width = f32(fw - left)
            if top + height > fh - a.roi_bottom_offset:
                height = f32(fh - a.roi_bottom_offset - top)
        elif top < a.roi_top_offset or top + height > fh - a.roi_bottom_offset:
            return None
        mask = None
        # masks reach the object only with output-instance-mask=1 (nvinfer->output_instance_mask)
        if self.mask_mode and self.config.get("output-instance-mask", False) and o.get("mask") is not None:
            mask = np.asarray(o["mask"], dtype=np.float32).reshape(int(o["mask_height"]), int(o["mask_width"]))
        return ObjectMeta(int(o["class_id"]), float(o["confidence"]), float(left), float(top), float(width),
                          float(height), mask, float(self.config.get("segmentation-threshold", 0.0)))


def _scaled(o: ObjectMeta, fx: float, fy: float) -> ObjectMeta:
    """An object on the streammux frame mapped onto the source frame (the mask covers the box)."""
    if fx == 1.0 and fy == 1.0:
        return o
    return ObjectMeta(o.class_id, o.confidence, o.left * fx, o.top * fy, o.width * fx, o.height * fy, o.mask,
                      o.mask_threshold)


def _nms(objs: list[dict], iou_threshold: float) -> list[dict]:
    """nvdsinfer's per-class NMS: stable sort by confidence, keep while IoU <= threshold with all kept."""
    from ...reference.nms import nms

    if not objs:
        return []
    boxes = np.array([[o["left"], o["top"], o["left"] + o["width"], o["top"] + o["height"]] for o in objs])
    scores = np.array([o["confidence"] for o in objs], dtype=np.float32)
    return [objs[i] for i in nms(boxes, scores, iou_threshold)]


def _topk(objs: list[dict], k: int) -> list[dict]:
    if k < 0:
        return objs
    order = sorted(range(len(objs)), key=lambda i: -objs[i]["confidence"])  # stable, as std::stable_sort
    return [objs[i] for i in order[:k]]
