#!/usr/bin/env bash
# Face blur for retinaface_mnet025 with DeepStream 9.x: nvinfer (instance masks from the fbtool parser)
# -> nvdsosd blur-bbox=2 (blur inside each face's mask). Written by `fbtool deepstream`.
# Usage (on a DeepStream host): ./run_blur_retinaface_mnet025.sh [INPUT_URI] [OUTPUT.mp4]
# Not run by fbtool's tests: DeepStream cannot be installed on its CI machines (docs/deepstream.md).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
INPUT="${1:-file:///opt/nvidia/deepstream/deepstream/samples/streams/sample_1080p_h264.mp4}"
DEFAULT_OUTPUT=fbtool_retinaface_mnet025_blurred.mp4
OUTPUT="${2:-$DEFAULT_OUTPUT}"
# <gie-unique-id>,<class id> pairs separated by `;`: nvinfer gie-unique-id 1, the recipe's labels
# (face), as gst_nvds_osd_set_property parses them.
BLUR_IDS="${BLUR_IDS:-1,0}"
# x264enc (software): data-centre GPUs have no NVENC; use nvv4l2h264enc where the GPU has one.
ENCODER="${ENCODER:-x264enc}"

gst-launch-1.0 -e \
  uridecodebin uri="$INPUT" ! mux.sink_0 \
  nvstreammux name=mux gpu-id=0 batch-size=1 width=1920 height=1080 batched-push-timeout=40000 ! \
  nvinfer config-file-path="$HERE/"config_infer_primary_retinaface_mnet025.txt ! \
  nvvideoconvert gpu-id=0 ! 'video/x-raw(memory:NVMM),format=RGBA' ! \
  nvdsosd gpu-id=0 process-mode=1 display-bbox=0 display-text=0 display-mask=0 \
    blur-bbox=2 blur-on-gie-class-ids="$BLUR_IDS" ! \
  nvvideoconvert gpu-id=0 ! 'video/x-raw,format=I420' ! $ENCODER ! h264parse ! qtmux ! \
  filesink location="$OUTPUT"
echo "blurred video: $OUTPUT"
