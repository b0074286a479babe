#!/usr/bin/env bash
# Installs everything fbtool needs on a fresh Debian/Ubuntu machine (CPU). Idempotent.
# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if command -v apt-get >/dev/null 2>&1 && [ "${FBTOOL_SKIP_APT:-0}" != "1" ]; then
  # clang + libFuzzer runtime: the parser fuzz target; chromium: the HTML report screenshot check.
  need=()
  command -v clang >/dev/null 2>&1 || need+=(clang)
  dpkg -s libclang-rt-14-dev >/dev/null 2>&1 || need+=(libclang-rt-14-dev)
  command -v g++ >/dev/null 2>&1 || need+=(g++)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  # GLib/GStreamer headers + pkg-config: NVIDIA's DeepStream sources compiled by the conformance tests
  for pkg in libglib2.0-dev libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev pkg-config; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
  done
  if [ ${#need[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  # Optional, for the GPU path: FFmpeg's nv-codec-headers (header-only, MIT), which fbtool's own NVDEC decoder
  # (plugins/nvdec, built with g++ on first use) compiles against; without them `--decoder pynvvideocodec`.
  if ! dpkg -s libffmpeg-nvenc-dev >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends libffmpeg-nvenc-dev >/dev/null 2>&1 \
      || echo "setup: libffmpeg-nvenc-dev not installed (optional: fbtool's own NVDEC decoder)"
  fi
fi

# Quiet: the root-user notice (CI and containers run as root on purpose) and setuptools' generic
# editable-install notice say nothing a user of this script can act on.
export PIP_ROOT_USER_ACTION=ignore
$PY -m pip install -q --upgrade pip
$PY -m pip install -q "torch==2.13.0"
# Model Optimizer is installed without its [onnx] extra (that would pull cupy-cuda12x and
# onnxruntime-gpu); the [quant] extra names the CPU pieces it needs instead.
# [dev] includes triton: its interpreter tests the CUDA stage's kernels on the CPU (tests/test_graphs.py)
PYTHONWARNINGS=ignore $PY -m pip install -q -e ".[quant,rtx,dev,conformance]"
echo "setup: done ($($PY -c 'import torch, onnx, onnxruntime; print("torch", torch.__version__, "onnx", onnx.__version__, "onnxruntime", onnxruntime.__version__)'))"
