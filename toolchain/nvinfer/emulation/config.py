"""An nvinfer config file read with nvinfer's key semantics and defaults.

Only what the emulation needs; the values are typed by the same key table as the checker, so a
config the checker accepts is read the way nvinfer reads it. Relative paths are resolved against
the config file's folder, as gstnvinfer does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import FbtoolError
from .. import keys
from ..keyfile import parse

# nvinfer's defaults (gstnvinfer_property_parser.h / the Gst-nvinfer documentation).
DEFAULT_PRE_CLUSTER = 0.2
DEFAULT_POST_CLUSTER = 0.0
DEFAULT_NMS_IOU = 0.3
DEFAULT_TOPK = -1


@dataclass(frozen=True)
class ClassAttrs:
    pre_cluster_threshold: float = DEFAULT_PRE_CLUSTER
    post_cluster_threshold: float = DEFAULT_POST_CLUSTER
    nms_iou_threshold: float = DEFAULT_NMS_IOU
    topk: int = DEFAULT_TOPK
    detected_min_w: int = 0
    detected_min_h: int = 0
    detected_max_w: int = 0
    detected_max_h: int = 0
    roi_top_offset: int = 0
    roi_bottom_offset: int = 0


_ATTR_KEYS = {
    "pre-cluster-threshold": "pre_cluster_threshold", "threshold": "pre_cluster_threshold",
    "post-cluster-threshold": "post_cluster_threshold", "nms-iou-threshold": "nms_iou_threshold",
    "topk": "topk", "detected-min-w": "detected_min_w", "detected-min-h": "detected_min_h",
    "detected-max-w": "detected_max_w", "detected-max-h": "detected_max_h",
    "roi-top-offset": "roi_top_offset", "roi-bottom-offset": "roi_bottom_offset",
}


@dataclass
class NvInferConfig:
    path: Path
    props: dict  # typed [property] values
    class_attrs: list[ClassAttrs] = field(default_factory=list)  # one per class

    def get(self, key: str, default=None):
        return self.props.get(key, default)

    def file(self, key: str) -> Path | None:
        v = self.props.get(key)
        if v is None:
            return None
        p = Path(v)
        return p if p.is_absolute() else (self.path.parent / p)

    @property
    def num_classes(self) -> int:
        return int(self.get("num-detected-classes", 4))  # nvinfer's default for detectors

    @property
    def network_type(self) -> int:
        return int(self.get("network-type", 0))

    @property
    def cluster_mode(self) -> int:
        return int(self.get("cluster-mode", 0))

    @property
    def infer_dims(self) -> tuple[int, int, int] | None:
        d = self.get("infer-dims")
        return tuple(d) if d else None


def read_config(path: str | Path, ds_version: str = "9.1") -> NvInferConfig:
    p = Path(path)
    if not p.is_file():
        raise FbtoolError(f"nvinfer config {p} does not exist", "write it with `fbtool deepstream`")
    kf = parse(p.read_text(), str(p))
    findings = keys.check(kf, ds_version, "nvinfer")
    keys.ensure_valid(findings, str(p))
    table = keys.load_table()["nvinfer"]["groups"]
    props = {k: keys.convert(table["property"][k], e.value) for k, e in kf.groups["property"].items()}
    n = int(props.get("num-detected-classes", 4))

    def attrs_of(group: str, base: ClassAttrs) -> ClassAttrs:
        entries = kf.groups.get(group, {})
        kw = {_ATTR_KEYS[k]: keys.convert(table["class-attrs"][k], e.value)
              for k, e in entries.items() if k in _ATTR_KEYS}
        return ClassAttrs(**{**base.__dict__, **kw})

    common = attrs_of("class-attrs-all", ClassAttrs())
    per_class = []
    for c in range(n):
        per_class.append(attrs_of(f"class-attrs-{c}", common))
    for g in kf.groups:
        m = re.fullmatch(r"class-attrs-(\d+)", g)
        if m and int(m.group(1)) >= n:
            raise FbtoolError(f"{p}: [{g}] is beyond num-detected-classes={n}", "nvinfer would ignore it")
    return NvInferConfig(p.resolve(), props, per_class)
