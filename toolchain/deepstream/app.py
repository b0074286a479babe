"""deepstream-app config (file in, boxes + masks drawn, file out) and the DeepStream 9.x face-blur app.

The blur needs an element after nvtracker that re-creates held faces and blurs them (fbtool's blur
library in nvdsvideotemplate, plugins/dsblur/); deepstream-app places nvdsvideotemplate only as a
primary gie (deepstream_primary_gie_bin.c) and cannot attach a probe, so the blur app is a
gst-launch-1.0 pipeline in a shell script. The deepstream-app config draws boxes and masks, with the
same tracker from 9.x on.
"""

from __future__ import annotations

import shlex

from ..nvinfer import keys
from ..nvinfer.names import DEFAULT_DEEPSTREAM_ROOT, DSBLUR_LIB, STREAMMUX_HEIGHT, STREAMMUX_WIDTH, TRACKER_LL_LIB
from ..recipe import Recipe
from . import tracker

# A stream every DeepStream install ships; the user passes their own with --input.
SAMPLE_URI = "file:///opt/nvidia/deepstream/deepstream/samples/streams/sample_1080p_h264.mp4"
MUX_W, MUX_H = STREAMMUX_WIDTH, STREAMMUX_HEIGHT  # the parser is built for this frame size
MASK_BLUR_SINCE = (9, 0)  # nvdsosd blur-bbox=2 (mask area), REFERENCE.md 4
GIE_ID = 1  # nvinfer's gie-unique-id in every emitted config


def supports_mask_blur(ds_version: str) -> bool:
    return keys._vt(ds_version) >= MASK_BLUR_SINCE


def app_groups(recipe: Recipe, infer_config: str, batch: int, gpu_id: int = 0, input_uri: str | None = None,
               with_tracker: bool = False) -> list:
    uri = input_uri or SAMPLE_URI
    groups = [
        ("application", [("enable-perf-measurement", True, None), ("perf-measurement-interval-sec", 5, None)]),
        ("source0", [
            ("enable", True, None),
            ("type", 3, "multi-URI source"),
            ("uri", uri, None),
            ("num-sources", 1, None),
            ("gpu-id", gpu_id, None),
        ]),
        ("streammux", [
            ("gpu-id", gpu_id, None),
            ("live-source", False, None),
            ("batch-size", 1, "one source"),
            ("batched-push-timeout", 40000, None),
            ("width", MUX_W, "nvinfer then letterboxes this frame to the network input"),
            ("height", MUX_H, None),
            ("enable-padding", False, None),
        ]),
        ("primary-gie", [
            ("enable", True, None),
            ("gpu-id", gpu_id, None),
            ("gie-unique-id", 1, None),
            ("batch-size", batch, "same as the nvinfer config (the engine's max batch)"),
            ("config-file", infer_config, "everything else comes from the nvinfer config"),
        ]),
        ("osd", [
            ("enable", True, None),
            ("gpu-id", gpu_id, None),
            ("process-mode", 1, "GPU"),
            ("border-width", 2, None),
            ("text-size", 12, None),
            ("display-text", True, None),
            ("display-bbox", True, None),
            ("display-mask", True, "draws the face contour masks"),
        ]),
        ("sink0", [
            ("enable", True, None),
            ("type", 3, "file"),
            ("container", 1, "mp4"),
            ("codec", 1, "H.264"),
            ("enc-type", 1, "software encoder: data-centre GPUs (A100, H100) have no NVENC"),
            ("sync", False, None),
            ("output-file", f"fbtool_{recipe.name}_out.mp4", "written to the current directory"),
        ]),
        ("tests", [("file-loop", False, None)]),
    ]
    if with_tracker:
        groups.insert(4, ("tracker", [("enable", 1, "nvtracker as in the blur script (the hold itself needs fbtool's blur "
                                                  "library, which deepstream-app cannot place after the tracker)")]
                          + tracker.element_properties(len(recipe.labels), tracker.LL_CONFIG_NAME, gpu_id)))
    return groups


def _comment(text: str) -> str:
    """Text safe inside a shell comment line (no line break can end the comment)."""
    return "".join(c if c.isprintable() else "?" for c in text)


def blur_gie_class_ids(gie_id: int, num_classes: int) -> str:
    """nvdsosd's blur-on-gie-class-ids: `;`-separated `<gie id>,<class id>` pairs. gst_nvds_osd_set_property
    splits on `;` then on `,`, and gst_nvds_osd_transform_ip reads index 0 as the gie and index 1 as
    the class (`1:0` is one element: the class would be read past its end). Only this branch copies
    the objects' masks to the blur, so it is always set."""
    return ";".join(f"{gie_id},{c}" for c in range(num_classes))


MASK_WORDS = {"box": "over its whole grown box", "own": "through its binary, non-empty contour mask"}


def dsblur_props(recipe: Recipe, gie_id: int) -> list[tuple[str, str]]:
    """customlib-props of fbtool's blur library (plugins/dsblur/customlib.cpp, SetProperty): the hold is
    `fbtool blur`'s (recipe blur.hold), the classes and gie those nvinfer emits, the mask rule the
    recipe's (Recipe.live_blur_mask). (The recall-first margin around each box is the kernel's,
    FBTOOL_DSBLUR_GROW.)"""
    return [("hold", str(int(recipe.blur.hold))), ("classes", tracker.class_ids(len(recipe.labels))),
            ("gie-id", str(int(gie_id))), ("mask", recipe.live_blur_mask)]


def blur_script(recipe: Recipe, infer_config: str, gpu_id: int = 0, dsblur_lib: str = DSBLUR_LIB) -> str:
    # The recipe check keeps names and labels to a safe set; the script quotes them anyway, so a
    # Recipe built in code without that check cannot put a command into the script either.
    cfg = shlex.quote(infer_config)
    default_out = shlex.quote(f"fbtool_{recipe.name}_blurred.mp4")
    gpu_id = int(gpu_id)
    trk = " ".join(f"{k}={shlex.quote(str(v))}" for k, v, _ in tracker.element_properties(len(recipe.labels), "LL", gpu_id)
                   if k not in ("ll-lib-file", "ll-config-file", "gpu-id"))
    props = " ".join(f"customlib-props={shlex.quote(f'{k}:{v}')}"
                     for k, v in dsblur_props(recipe, GIE_ID))
    lib = shlex.quote(str(dsblur_lib))
    return f"""#!/usr/bin/env bash
# Face blur for {_comment(recipe.name)} with DeepStream 9.x: nvinfer (instance masks from the fbtool parser)
# -> nvtracker (IOU, probationAge 0, shadow tracks out) -> nvdsvideotemplate with fbtool's blur library
# (held faces for {int(recipe.blur.hold)} frames; every face blurred {MASK_WORDS[recipe.live_blur_mask]}; fbtool's blur kernel).
# Written by `fbtool deepstream`; docs/deepstream.md, "Held faces and fbtool's blur in DeepStream".
# Usage (on a DeepStream host): ./run_blur_{_comment(recipe.name)}.sh [INPUT_URI] [OUTPUT.mp4]
# Not run by fbtool's tests: DeepStream cannot be installed on its CI machines (docs/deepstream.md).
set -euo pipefail
HERE="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
INPUT="${{1:-{SAMPLE_URI}}}"
DEFAULT_OUTPUT={default_out}
OUTPUT="${{2:-$DEFAULT_OUTPUT}}"
DS_ROOT="${{DEEPSTREAM_ROOT:-{DEFAULT_DEEPSTREAM_ROOT}}}"
DSBLUR_LIB={lib}
case "$DSBLUR_LIB" in /*) ;; *) DSBLUR_LIB="$HERE/$DSBLUR_LIB" ;; esac
if [ ! -f "$DSBLUR_LIB" ]; then
  echo "Error: $DSBLUR_LIB does not exist (hint: build it on this host: fbtool build-parser --dsblur -o RUN_FOLDER)" >&2
  exit 1
fi
# x264enc (software): data-centre GPUs have no NVENC; use nvv4l2h264enc where the GPU has one.
ENCODER="${{ENCODER:-x264enc}}"

gst-launch-1.0 -e \\
  uridecodebin uri="$INPUT" ! mux.sink_0 \\
  nvstreammux name=mux gpu-id={gpu_id} batch-size=1 width={MUX_W} height={MUX_H} batched-push-timeout=40000 ! \\
  nvinfer config-file-path="$HERE/"{cfg} ! \\
  nvtracker gpu-id={gpu_id} ll-lib-file="$DS_ROOT/{TRACKER_LL_LIB}" ll-config-file="$HERE/"{tracker.LL_CONFIG_NAME} \\
    {trk} ! \\
  nvvideoconvert gpu-id={gpu_id} ! 'video/x-raw(memory:NVMM),format=RGBA' ! \\
  nvdsvideotemplate gpu-id={gpu_id} customlib-name="$DSBLUR_LIB" \\
    {props} ! \\
  nvvideoconvert gpu-id={gpu_id} ! 'video/x-raw,format=I420' ! $ENCODER ! h264parse ! qtmux ! \\
  filesink location="$OUTPUT"
echo "blurred video: $OUTPUT"
"""
