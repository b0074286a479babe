#!/usr/bin/env bash
# Issue 18d, H200 call: whole-process GPU memory at 32 streams, one process per memory plan
# (scripts/gpu_memory_lean.py: NVML after each step, the run's peak, the detections compared with the
# default plan at the same batch), then `fbtool bench --streams 32 --memory-lean` and `fbtool blur` of 32
# inputs with and without --memory-lean (nvidia-smi sampled every 50 ms; the faces sidecars compared).
# Carried folder .gpu18d: tree/ (git archive of the branch), shared/, data/faces1080.mp4, inc/, whl/.
# Usage (from the repository root on the GPU machine): bash .gpu18d/tree/scripts/gpu_issue18d.sh $OUT full|confirm
# (call 1: full; call 2: confirm)
set -uo pipefail
OUT=${1:?}; MODE=${2:-full}; cd "$(dirname "$0")/../.."   # .gpu18d
G=$PWD; R=/tmp/r18d; mkdir -p $R
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site whl/*.whl || exit 1
export PYTHONPATH=$G/tree:/tmp/site PYTHONUNBUFFERED=1 FBTOOL_CACHE=/tmp/fbtool-cache FBTOOL_NVCODEC_INCLUDE=$G/inc
CLIP=$G/data/faces1080.mp4
FB=(python3 -c "import sys; from toolchain.cli import main; main(sys.argv[1:])")
cd tree
# M STEM ARGS...: one gpu_memory_lean.py process
M() { local stem=$1; shift; echo "== $stem ($*)"
  timeout 50 python3 scripts/gpu_memory_lean.py --clip $CLIP --out $R --stem $stem "$@" 2>&1 \
    | grep -E '^\{"(step|run)"|Error|Traceback|error' | cut -c1-900; }
# B NAME ARGS...: fbtool blur of the 32 inputs, --no-encode, the process's GPU memory sampled by nvidia-smi
B() { local name=$1; shift; echo "== blur $name ($*)"
  nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits -lms 50 > $R/smi_$name.csv &
  local sp=$!
  timeout 80 "${FB[@]}" blur /tmp/in32 -o /tmp/o_$name --device cuda --backend torch --precision fp16 --no-encode \
    --max-frames 300 "$@" 2>&1 | tail -2 | cut -c1-300
  kill $sp; wait $sp 2>/dev/null
  echo "peak MiB (nvidia-smi, every 50 ms): $(awk -F', ' '{if ($2 > m) m = $2} END {print m}' $R/smi_$name.csv)"; }
{
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; date -u
python3 -c "import torch; print('torch', torch.__version__, 'cudnn', torch.backends.cudnn.version())"
if [ "$MODE" = full ]; then
  M b32_default --plan default --batch 32 --save-dets $R/dets_b32.json
  M b8_default_t8 --plan default --batch 8 --set decode_threads=8 --save-dets $R/dets_b8.json --compare-dets $R/dets_b32.json
  M b8_lean --plan lean --compare-dets $R/dets_b8.json
  M b8_lean_slots1 --plan lean --set graph_slots=1 --compare-dets $R/dets_b8.json
  M b8_lean_chunk1 --plan lean --set frame_chunk=1 --compare-dets $R/dets_b8.json
  M b8_lean_nocudnn --plan lean --set cudnn=False --compare-dets $R/dets_b8.json
  M b8_lean_noexp --plan lean --set expandable_segments=False --compare-dets $R/dets_b8.json
  M b8_lean_t16 --plan lean --set decode_threads=16 --compare-dets $R/dets_b8.json
  M b4_lean --plan lean --batch 4 --compare-dets $R/dets_b8.json
fi
if [ "$MODE" = confirm ]; then  # call 2: the blur's pooling in chunks too; 16 decoding threads in the preset
  M c2_b8_default_t8 --plan default --batch 8 --set decode_threads=8 --save-dets $R/dets_b8.json
  M c2_b8_lean_t8 --plan lean --set decode_threads=8 --compare-dets $R/dets_b8.json
  M c2_b8_lean --plan lean --compare-dets $R/dets_b8.json
  M c2_b8_lean_slots1 --plan lean --set graph_slots=1 --compare-dets $R/dets_b8.json
fi
echo "== fbtool bench --streams 32 --memory-lean"
timeout 90 "${FB[@]}" bench --device cuda --streams 32 --source $CLIP --precision fp16 --frames-per-stream 300 \
  --naive-frames 8 --memory-lean -o $R --stem bench_lean 2>&1 | grep -E "^\| 32|Error|naive" | cut -c1-400
mkdir -p /tmp/in32; for i in $(seq -w 1 32); do ln -sf $CLIP /tmp/in32/c$i.mp4; done
B lean --memory-lean
B default_b8 --batch 8
python3 - <<'EOF'
import json, pathlib
a, b = pathlib.Path("/tmp/o_lean"), pathlib.Path("/tmp/o_default_b8")
fa = sorted(a.glob("*.faces.json"))
same = sum(json.loads(f.read_text())["frames"] == json.loads((b / f.name).read_text())["frames"] for f in fa)
faces = sum(len(r["faces"]) for f in fa for r in json.loads(f.read_text())["frames"])
print(f"blur sidecars: {len(fa)} inputs, {same} identical lean vs default (batch 8), {faces} faces (lean)")
EOF
date -u
} 2>&1 | tee $R/run.log
rm -f $R/*.png $R/dets_*.json; tar czf $OUT/r18d.tgz -C $R .; cp $R/run.log $OUT/
