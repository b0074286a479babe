"""nvtracker for the face-blur pipeline: the element's properties and its low-level (IOU) config.

Why IOU and not NvDCF (docs/deepstream.md, "Held faces"): the hold is fbtool's, not the tracker's. A
missed face must be blurred for exactly `blur.hold` frames at its last box with its last mask, which
the compiled component (plugins/dsblur/ds_hold.cpp) does from nvtracker's shadow-track list; the
tracker only has to keep ids across misses. The IOU tracker does that with no visual model: its
association (IoU, greedy) is simple enough to emulate in Python for `fbtool validate`
(nvinfer/emulation/tracker.py). NvDCF would report a missed face as an ACTIVE object at a
visually-tracked box of its own (no mask, a box no emulation here can reproduce: the correlation
filters are in the closed library) and costs GPU time per target.

What NVIDIA's open source says and the emitted values follow (gst-nvtracker, DeepStream 9.1):
- `probationAge: 0`: a new target is ACTIVE, and reported, from its first frame;
- `operate-on-class-ids`: with it set, removeUntrackedObjects (nvtracker_proc.cpp) leaves objects the
  tracker did not take in the frame's list, so no detection is ever dropped before the blur;
- `outputShadowTracks: 1`: shadow-tracked (INACTIVE) targets come out as NVDS_TRACKER_SHADOW_LIST_META;
  their boxes are in tracker-width x tracker-height coordinates (updateShadowTrackMeta does not
  rescale them, unlike the past-frame meta), so the component takes boxes from the objects it saw;
- `tracking-id-reset-mode=1`: bit 2 (FromZeroAfterEOS) would remap NvDsObjectMeta.object_id
  (objectIdMapping) but not the shadow list's uniqueId, and held faces would never be found.
"""

from __future__ import annotations

from ..nvinfer.names import DEFAULT_DEEPSTREAM_ROOT, TRACKER_LL_LIB

TRACKER_WIDTH, TRACKER_HEIGHT = 640, 384  # the IOU tracker reads no pixels; multiples of 32 as nvtracker wants
LL_CONFIG_NAME = "config_tracker_fbtool_iou.yml"


def class_ids(num_classes: int) -> str:
    """operate-on-class-ids: every class of the detector (all are blurred). `;`-separated, as both
    gst_nv_tracker_set_property (any one separator character) and deepstream-app read it."""
    return ";".join(str(c) for c in range(num_classes))


def ll_config(hold: int, min_iou: float) -> str:
    """The NvMultiObjectTracker config (YAML). Keys the open source names (NvMOTQuery in
    includes/nvdstracker.h) are checked in tests/test_deepstream_tracker.py; the others are read by
    the closed library only (docs/deepstream.md lists them)."""
    return f"""%YAML:1.0
# nvtracker low-level config for fbtool's face blur (IOU tracker). Written by `fbtool deepstream`;
# the hold itself is fbtool's component (customlib-props hold:{hold}); this only keeps ids across misses.
BaseConfig:
  minDetectorConfidence: 0       # the detector's own threshold already applied
TargetManagement:
  maxTargetsPerStream: 150
  minIouDiff4NewTarget: 0.5
  probationAge: 0                # a new face is a target (and reported) from its first frame
  maxShadowTrackingAge: {hold}   # = fbtool blur's hold (recipe blur.hold): ids kept across a miss this long
  earlyTerminationAge: 1
  outputShadowTracks: 1          # NVDS_TRACKER_SHADOW_LIST_META: what the hold component reads
TrajectoryManagement:
  useUniqueID: 0
DataAssociator:
  dataAssociatorType: 0
  associationMatcherType: 0      # greedy
  checkClassMatch: 1
  minMatchingScore4Overall: 0.0
  minMatchingScore4SizeSimilarity: 0.0
  minMatchingScore4Iou: {min_iou}   # = recipe blur.track_iou
  matchingScoreWeight4SizeSimilarity: 0.0
  matchingScoreWeight4Iou: 1.0
"""


def element_properties(num_classes: int, ll_config_path: str, gpu_id: int = 0) -> list[tuple[str, object, str | None]]:
    """nvtracker's properties (gstnvtracker.cpp names), also the deepstream-app [tracker] keys."""
    return [
        ("tracker-width", TRACKER_WIDTH, None),
        ("tracker-height", TRACKER_HEIGHT, None),
        ("gpu-id", gpu_id, None),
        ("ll-lib-file", f"{DEFAULT_DEEPSTREAM_ROOT}/{TRACKER_LL_LIB}", "NvMultiObjectTracker (closed)"),
        ("ll-config-file", ll_config_path, "IOU tracker, probationAge 0, shadow tracks out"),
        ("tracking-id-reset-mode", 1, "object ids keep matching the shadow list's ids (not bit 2)"),
        ("operate-on-class-ids", class_ids(num_classes), "keeps untracked detections in the frame"),
        ("display-tracking-id", 0, None),
    ]
