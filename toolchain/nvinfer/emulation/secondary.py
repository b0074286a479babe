"""A secondary nvinfer on object crops (process-mode=2), as DeepStream 9.1's gst-nvinfer does it.

Facts (../shared/third_party/deepstream-9.1/src/gst-plugins/gst-nvinfer):
- gstnvinfer.cpp, should_infer_object: an object is inferred when its unique_component_id equals
  operate-on-gie-id, its box is within input-object-min/max-width/height, and its class passes
  operate-on-class-ids; the re-inference interval applies to classifiers and detectors only, so a
  network-type=100 (or 3) SGIE infers every eligible object in every frame.
- gstnvinfer.cpp, get_converted_buffer: the crop is the object's rect_params with
  left/top = GST_ROUND_UP_2((unsigned) left/top), width/height = GST_ROUND_DOWN_2((unsigned) w/h); no
  margin, no rotation, no clipping. Scaled to the network size, or, with maintain-aspect-ratio, to
  (net_w, (guint)(net_w * h / w)) or ((guint)(net_h * w / h), net_h), padded right/bottom, or on both
  sides with symmetric-padding (offset = (net - dest) / 2).
- gstnvinfer_meta_utils.cpp, attach_tensor_output_meta: with output-tensor-meta=1 every crop's raw
  output layers go to an NvDsInferTensorMeta (unique_id, output_layers_info, out_buf_ptrs_host,
  network_info, maintain_aspect_ratio, symmetric_padding) in the object's obj_user_meta_list. The
  crop offsets are not in it: the consumer recomputes them with the arithmetic above
  (`object_crop`; plugins/contour/ does the same in C++).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...reference.contour import Crop


def round_up_2(v: int) -> int:
    return (v + 1) & ~1


def round_down_2(v: int) -> int:
    return v & ~1


def _u32(v: float) -> int:
    """(unsigned int) of a float rect value: truncation toward zero (negative values are undefined in
    C; the box-squaring component never passes one)."""
    return int(v)


@dataclass(frozen=True)
class ObjectCrop:
    """What get_converted_buffer computes for one object."""
    src_left: int
    src_top: int
    src_width: int
    src_height: int
    dest_width: int
    dest_height: int
    offset_left: int
    offset_top: int
    net_width: int
    net_height: int

    def crop(self) -> Crop:
        """Network pixel (u, v) -> frame pixel, as a reference Crop spanning the whole network input
        (padding included): x = src_left + (u - offset_left) * src_width / dest_width."""
        if self.net_width != self.net_height:
            raise ValueError(f"a {self.net_width}x{self.net_height} network input: Crop is square (FaceMesh: 192x192)")
        sx = self.src_width / self.dest_width
        sy = self.src_height / self.dest_height
        return Crop.from_rect(self.src_left - self.offset_left * sx, self.src_top - self.offset_top * sy,
                              self.net_width * sx, self.net_height * sy, side=self.net_width)


def object_crop(left: float, top: float, width: float, height: float, net_w: int, net_h: int,
                maintain_aspect_ratio: bool = False, symmetric_padding: bool = False) -> ObjectCrop:
    """gstnvinfer.cpp, get_converted_buffer, for an object's rect_params."""
    sl, st = round_up_2(_u32(left)), round_up_2(_u32(top))
    sw, sh = round_down_2(_u32(width)), round_down_2(_u32(height))
    ol = ot = 0
    if maintain_aspect_ratio:
        hdest = net_w * sh / float(sw)
        wdest = net_h * sw / float(sh)
        if hdest <= net_h:
            dw, dh = net_w, int(hdest)
        else:
            dw, dh = int(wdest), net_h
        if symmetric_padding:
            ol, ot = (net_w - dw) // 2, (net_h - dh) // 2
    else:
        dw, dh = net_w, net_h
    return ObjectCrop(sl, st, sw, sh, dw, dh, ol, ot, net_w, net_h)


def should_infer(obj_gie_id: int, width: float, height: float, operate_on_gie_id: int = -1,
                 min_w: int = 0, min_h: int = 0, max_w: int = 0, max_h: int = 0) -> bool:
    """gstnvinfer.cpp, should_infer_object, for a network-type=100 SGIE (no class filter, no history)."""
    if operate_on_gie_id > -1 and obj_gie_id != operate_on_gie_id:
        return False
    if width < min_w or height < min_h:
        return False
    if (max_w > 0 and width > max_w) or (max_h > 0 and height > max_h):
        return False
    return True


# ------------------------------------------------------------------ the two-model pipeline, emulated
# gst_nvinfer_start (gstnvinfer.cpp): on a dGPU with scaling-compute-hw default (0) or VIC the least
# object nvinfer infers is 16x16 ("Setting min object dimensions as 16x16 instead of 1x1 to support VIC
# compute mode"), else input-object-min-width/height, at least MIN_INPUT_OBJECT_WIDTH/HEIGHT = 1.
DGPU_MIN_OBJECT = 16


@dataclass
class ContouredObject:
    """One detector object after the two components: `obj` is what nvdsosd receives."""
    obj: object  # ObjectMeta (nvinfer.py): the oval's bounds + 32x32 mask, or the detector's box and mask
    contoured: bool  # False: fallback (no inference on it, or FaceMesh said "no face")
    square: tuple[int, int, int, int]  # the box the SGIE cropped (left, top, width, height)
    presence: float | None = None
    landmarks: np.ndarray | None = None  # [468, 2] frame pixels (None when not inferred)
    detector: object = None  # the detector's ObjectMeta, as it came out of the primary nvinfer
    output: np.ndarray | None = None  # [468, 3] float32: FaceMesh's landmark layer as the tensor meta holds it


class SecondaryEmulator:
    """The FaceMesh SGIE (its emitted config) between the box-squaring and contour components, on one
    frame's detector objects, as DeepStream would run it: square_rect -> should_infer_object ->
    get_converted_buffer's crop (GPU scaler stood in by OpenCV's bilinear resize: not verified) ->
    FaceMesh -> tensor meta -> contour_object, or the detector's box and mask back."""

    def __init__(self, config, params: dict, runner=None, ds_version: str = "9.1", dgpu: bool = True):
        from .config import NvInferConfig, read_config

        self.config = config if isinstance(config, NvInferConfig) else read_config(config, ds_version)
        c = self.config
        if c.network_type != 100 or c.get("process-mode", 1) != 2 or not c.get("output-tensor-meta", False):
            raise ValueError(f"{c.path} is not a secondary network-type=100 config with output-tensor-meta=1")
        _, self.net_h, self.net_w = c.infer_dims
        self.color = "bgr" if c.get("model-color-format", 0) == 1 else "rgb"
        self.scale = float(c.get("net-scale-factor", 1.0))
        self.offsets = [float(v) for v in (c.get("offsets") or [0.0, 0.0, 0.0])]
        self.keep_aspect = bool(c.get("maintain-aspect-ratio", False))
        self.symmetric = bool(c.get("symmetric-padding", False))
        self.interpolation = "nearest" if c.get("scaling-filter", 0) == 0 else "bilinear"
        self.batch = int(c.get("batch-size", 1))
        self.outputs = list(c.get("output-blob-names") or [])
        floor = DGPU_MIN_OBJECT if dgpu and c.get("scaling-compute-hw", 0) in (0, 2) else 1
        self.min_w = max(floor, int(c.get("input-object-min-width", 0)))
        self.min_h = max(floor, int(c.get("input-object-min-height", 0)))
        self.max_w = int(c.get("input-object-max-width", 0))
        self.max_h = int(c.get("input-object-max-height", 0))
        self.p = dict(params)
        self.runner = runner or self._default_runner()

    def _default_runner(self):
        from ...runners import open_runner

        return open_runner("onnxruntime", self.config.file("onnx-file"))

    def _input(self, frame: np.ndarray, c: ObjectCrop) -> np.ndarray:
        import cv2

        from ...reference.preprocess import normalize

        src = frame[c.src_top:c.src_top + c.src_height, c.src_left:c.src_left + c.src_width]
        interp = cv2.INTER_LINEAR if self.interpolation == "bilinear" else cv2.INTER_NEAREST
        canvas = np.zeros((self.net_h, self.net_w, 3), np.uint8)
        canvas[c.offset_top:c.offset_top + c.dest_height, c.offset_left:c.offset_left + c.dest_width] = \
            cv2.resize(src, (c.dest_width, c.dest_height), interpolation=interp)
        return normalize(canvas, self.color, self.offsets, self.scale)

    def run(self, frame: np.ndarray, objects: list) -> list[ContouredObject]:
        """`frame`: the streammux frame (BGR); `objects`: the detector's ObjectMeta on it."""
        from ...reference.contour import contour_object, oval_polygon, square_rect
        from .nvinfer import ObjectMeta

        fh, fw = frame.shape[:2]
        p = self.p
        f32 = np.float32
        todo, out = [], []
        for o in objects:
            sq = square_rect(f32(o.left), f32(o.top), f32(o.width), f32(o.height), fw, fh, p["scale"])
            out.append(ContouredObject(o, False, sq, detector=o))
            if should_infer(p["pgie_id"], sq[2], sq[3], p["pgie_id"], self.min_w, self.min_h, self.max_w, self.max_h):
                todo.append((len(out) - 1, object_crop(*sq, self.net_w, self.net_h, self.keep_aspect, self.symmetric)))
        for i in range(0, len(todo), self.batch):
            chunk = todo[i:i + self.batch]
            res = self.runner.infer({self.runner.input_name: np.stack([self._input(frame, c) for _, c in chunk])})
            names = self.outputs or list(self.runner.output_names)
            by_size = {int(np.asarray(res[n][0]).size): n for n in names}  # fbtool_contour: layers found by size
            pres = np.asarray(res[by_size[1]], np.float32).reshape(len(chunk))
            lms = np.asarray(res[by_size[468 * 3]], np.float32).reshape(len(chunk), 468, 3)
            for (k, c), pr, lm in zip(chunk, pres, lms):
                out[k].output = lm.copy()
                presence = float(pr)
                if p.get("presence_is_logit"):
                    presence = 1.0 / (1.0 + float(np.exp(-presence)))
                lm = lm.astype(np.float64)
                lm[:, :2] *= p.get("landmark_scale", 1.0)
                crop = c.crop()
                m = crop.to_frame()
                rec = out[k]
                rec.presence = presence
                rec.landmarks = lm[:, :2] @ m[:, :2].T + m[:, 2]
                got = contour_object(oval_polygon(lm, crop), presence, p["presence_threshold"], fw, fh)
                if got is not None:
                    (x1, y1, x2, y2), grid = got
                    o = rec.obj
                    rec.obj = ObjectMeta(o.class_id, o.confidence, float(f32(x1)), float(f32(y1)),
                                         float(f32(x2 - x1)), float(f32(y2 - y1)), grid, 0.5)
                    rec.contoured = True
        return out
