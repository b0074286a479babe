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
