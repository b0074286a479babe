#!/usr/bin/env bash
# Render a validate report.html in headless Chromium (Debian's package) and save a PNG screenshot.
# usage: scripts/screenshot_report.sh RUN/report.html OUT.png [WIDTH] [HEIGHT]
set -euo pipefail
html=$(realpath "$1"); out=$(realpath -m "$2"); w=${3:-1200}; h=${4:-2400}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "Error: chromium not found (hint: apt-get install chromium)" >&2; exit 2; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size="$w,$h" \
  --screenshot="$out" "file://$html" >/dev/null 2>&1
[ -s "$out" ] || { echo "Error: chromium wrote no screenshot" >&2; exit 2; }
echo "$out"
