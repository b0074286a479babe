#!/usr/bin/env bash
# Fuzz both parser entry points under AddressSanitizer + UBSan with libFuzzer (clang-14).
#
#   plugins/fuzz/run_fuzz.sh [RUNS] [WORKDIR] [extra libFuzzer flags...]
#
# RUNS: executions (default 1000000). WORKDIR: build + corpus folder (default .cache/fuzz, outside
# git). The model parameters header is generated from the recipe (FBTOOL_RECIPE, default
# retinaface_mnet025), as for the real build. Exit status: libFuzzer's (non-zero on a finding,
# with the crashing input saved in WORKDIR as crash-*).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
RUNS="${1:-1000000}"
WORK="${2:-$REPO/.cache/fuzz}"
shift $(( $# > 2 ? 2 : $# ))
CLANG="${CLANG:-clang++-14}"
command -v "$CLANG" >/dev/null || { echo "run_fuzz.sh: $CLANG not found (apt-get install clang-14 libclang-rt-14-dev)" >&2; exit 3; }

mkdir -p "$WORK/corpus"
( cd "$REPO" && python3 -m toolchain.parser.params ${FBTOOL_RECIPE:+--recipe "$FBTOOL_RECIPE"} "$WORK" >/dev/null )
"$CLANG" -std=c++17 -g -O1 -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -D_GLIBCXX_USE_CXX11_ABI=1 -DFBTOOL_DS_MAJOR="${FBTOOL_DS_MAJOR:-9}" \
  -I"$REPO/plugins/include" -I"$WORK" "$HERE/fuzz_parser.cpp" -o "$WORK/fuzz_parser"

export FBTOOL_PARSER_QUIET=1  # the parser explains each rejection on stderr; not a million times
start=$(date +%s)
"$WORK/fuzz_parser" -runs="$RUNS" -max_len=4096 -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$WORK/" "$@" "$WORK/corpus"
echo "run_fuzz.sh: $RUNS runs requested, finished in $(( $(date +%s) - start )) s, no finding"
