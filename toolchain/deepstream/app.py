"""deepstream-app config (file in, boxes + masks drawn, file out) and the DeepStream 9.x face-blur app.

deepstream-app's [osd] group has no blur keys, so blurring needs nvdsosd's own properties
(`blur-bbox=2`: blur inside each object's instance mask, the box where there is none;
`blur-on-gie-class-ids`): the blur app is a gst-launch-1.0 pipeline in a shell script.
"""

from __future__ import annotations

import shlex

from ..nvinfer import keys
from ..nvinfer.names import STREAMMUX_HEIGHT, STREAMMUX_WIDTH
from ..recipe import Recipe

# A stream every DeepStream install ships; the user passes their own with --input.
SAMPLE_URI = "file:///opt/nvidia/deepstream/deepstream/samples/streams/sample_1080p_h264.mp4"
MUX_W, MUX_H = STREAMMUX_WIDTH, STREAMMUX_HEIGHT  # the parser is built for this frame size
MASK_BLUR_SINCE = (9, 0)  # nvdsosd blur-bbox=2 (mask area), REFERENCE.md 4


def supports_mask_blur(ds_version: str) -> bool:
    return keys._vt(ds_version) >= MASK_BLUR_SINCE


def app_groups(recipe: Recipe, infer_config: str, batch: int, gpu_id: int = 0, input_uri: str | None = None) -> list:
    uri = input_uri or SAMPLE_URI
    return [
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


def _comment(text: str) -> str:
    """Text safe inside a shell comment line (no line break can end the comment)."""
    return "".join(c if c.isprintable() else "?" for c in text)


def blur_gie_class_ids(gie_id: int, num_classes: int) -> str:
    """nvdsosd's blur-on-gie-class-ids: `;`-separated `<gie id>,<class id>` pairs. gst_nvds_osd_set_property
    splits on `;` then on `,`, and gst_nvds_osd_transform_ip reads index 0 as the gie and index 1 as
    the class (`1:0` is one element: the class would be read past its end). Only this branch copies
    the objects' masks to the blur, so it is always set."""
    return ";".join(f"{gie_id},{c}" for c in range(num_classes))


def blur_script(recipe: Recipe, infer_config: str, gpu_id: int = 0) -> str:
    # The recipe check keeps names and labels to a safe set; the script quotes them anyway, so a
    # Recipe built in code without that check cannot put a command into the script either.
    blur_ids = blur_gie_class_ids(1, len(recipe.labels))
    cfg = shlex.quote(infer_config)
    default_out = shlex.quote(f"fbtool_{recipe.name}_blurred.mp4")
    gpu_id = int(gpu_id)
    return f"""#!/usr/bin/env bash
# Face blur for {_comment(recipe.name)} with DeepStream 9.x: nvinfer (instance masks from the fbtool parser)
# -> nvdsosd blur-bbox=2 (blur inside each face's mask). Written by `fbtool deepstream`.
# Usage (on a DeepStream host): ./run_blur_{_comment(recipe.name)}.sh [INPUT_URI] [OUTPUT.mp4]
# Not run by fbtool's tests: DeepStream cannot be installed on its CI machines (docs/deepstream.md).
set -euo pipefail
HERE="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
INPUT="${{1:-{SAMPLE_URI}}}"
DEFAULT_OUTPUT={default_out}
OUTPUT="${{2:-$DEFAULT_OUTPUT}}"
# <gie-unique-id>,<class id> pairs separated by `;`: nvinfer gie-unique-id 1, the recipe's labels
# ({_comment(", ".join(recipe.labels))}), as gst_nvds_osd_set_property parses them.
BLUR_IDS="${{BLUR_IDS:-{blur_ids}}}"
# x264enc (software): data-centre GPUs have no NVENC; use nvv4l2h264enc where the GPU has one.
ENCODER="${{ENCODER:-x264enc}}"

gst-launch-1.0 -e \\
  uridecodebin uri="$INPUT" ! mux.sink_0 \\
  nvstreammux name=mux gpu-id={gpu_id} batch-size=1 width={MUX_W} height={MUX_H} batched-push-timeout=40000 ! \\
  nvinfer config-file-path="$HERE/"{cfg} ! \\
  nvvideoconvert gpu-id={gpu_id} ! 'video/x-raw(memory:NVMM),format=RGBA' ! \\
  nvdsosd gpu-id={gpu_id} process-mode=1 display-bbox=0 display-text=0 display-mask=0 \\
    blur-bbox=2 blur-on-gie-class-ids="$BLUR_IDS" ! \\
  nvvideoconvert gpu-id={gpu_id} ! 'video/x-raw,format=I420' ! $ENCODER ! h264parse ! qtmux ! \\
  filesink location="$OUTPUT"
echo "blurred video: $OUTPUT"
"""
