#!/usr/bin/env bash
# Face blur for retinaface_mnet025 with DeepStream 9.x: nvinfer (instance masks from the fbtool parser)
# -> nvtracker (IOU, probationAge 0, shadow tracks out) -> nvdsvideotemplate with fbtool's blur library
# (held faces for 12 frames; every face blurred over its whole grown box; fbtool's blur kernel).
# Written by `fbtool deepstream`; docs/deepstream.md, "Held faces and fbtool's blur in DeepStream".
# Usage (on a DeepStream host): ./run_blur_retinaface_mnet025.sh [INPUT_URI] [OUTPUT.mp4]
# Not run by fbtool's tests: DeepStream cannot be installed on its CI machines (docs/deepstream.md).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
INPUT="${1:-file:///opt/nvidia/deepstream/deepstream/samples/streams/sample_1080p_h264.mp4}"
DEFAULT_OUTPUT=fbtool_retinaface_mnet025_blurred.mp4
OUTPUT="${2:-$DEFAULT_OUTPUT}"
DS_ROOT="${DEEPSTREAM_ROOT:-/opt/nvidia/deepstream/deepstream}"
DSBLUR_LIB=libnvds_fbtool_dsblur.so
case "$DSBLUR_LIB" in /*) ;; *) DSBLUR_LIB="$HERE/$DSBLUR_LIB" ;; esac
if [ ! -f "$DSBLUR_LIB" ]; then
  echo "Error: $DSBLUR_LIB does not exist (hint: build it on this host: fbtool build-parser --dsblur -o RUN_FOLDER)" >&2
  exit 1
fi
# x264enc (software): data-centre GPUs have no NVENC; use nvv4l2h264enc where the GPU has one.
ENCODER="${ENCODER:-x264enc}"

gst-launch-1.0 -e \
  uridecodebin uri="$INPUT" ! mux.sink_0 \
  nvstreammux name=mux gpu-id=0 batch-size=1 width=1920 height=1080 batched-push-timeout=40000 ! \
  nvinfer config-file-path="$HERE/"config_infer_blur_retinaface_mnet025.txt ! \
  nvtracker gpu-id=0 ll-lib-file="$DS_ROOT/lib/libnvds_nvmultiobjecttracker.so" ll-config-file="$HERE/"config_tracker_fbtool_iou.yml \
    tracker-width=640 tracker-height=384 tracking-id-reset-mode=1 operate-on-class-ids=0 display-tracking-id=0 ! \
  nvvideoconvert gpu-id=0 ! 'video/x-raw(memory:NVMM),format=RGBA' ! \
  nvdsvideotemplate gpu-id=0 customlib-name="$DSBLUR_LIB" \
    customlib-props=hold:12 customlib-props=classes:0 customlib-props=gie-id:1 customlib-props=mask:box ! \
  nvvideoconvert gpu-id=0 ! 'video/x-raw,format=I420' ! $ENCODER ! h264parse ! qtmux ! \
  filesink location="$OUTPUT"
echo "blurred video: $OUTPUT"
