#!/usr/bin/env bash
# Regenerates the dashboard pictures in docs/images/ from a real run: the native stack with
# traffic (successes, bad input, a slow model, a regressor with feedback), every console page and
# Prometheus's alerts page photographed by headless Chromium. It is the browser test
# (tests/test_dashboard_browser.py), so a picture is only written by a run whose checks pass.
#
# Usage: scripts/screenshots.sh [TRAFFIC_SECONDS]   (default 240: the graphs get four minutes of history)
# Then the PNGs are cut to a 128-colour palette (Pillow), about a third of their size.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/docs/images"
mkdir -p "$out"
INFERWATCH_SCREENSHOTS_DIR="$out" INFERWATCH_SCREENSHOTS_TRAFFIC_SECONDS="${1:-240}" \
  "$root/scripts/test.sh" tests/test_dashboard_browser.py -q
"$root/scripts/python" - "$out" <<'PY'
import sys
from pathlib import Path
from PIL import Image

for path in sorted(Path(sys.argv[1]).glob("*.png")):
    before = path.stat().st_size
    Image.open(path).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"{path.name}: {before // 1024} KiB -> {path.stat().st_size // 1024} KiB")
PY
