#!/bin/sh
# magpie view in a real browser (headless Chromium over the DevTools protocol): a heatmap whose
# probabilities follow a known pattern is drawn over the slide where and in the colour the grid
# says; the tissue mask, the patch grid and its hover text, the patch browser with a query and
# the report link of a run over the same slide (tests/view/browser_check.py). Skipped, with the reason, without a browser or without a
# python3 that has numpy and PIL (tools/install-deps.sh installs them), or when magpie was built
# without OpenSeadragon (view/meson.build's warning says how to get it).
set -u
T=$(mktemp -d /tmp/mp_view_browser.XXXXXX)
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$T"' EXIT
B="$MAGPIE_BIN"
[ "${VIEW_HAVE_OSD:-1}" = 1 ] || {
    echo "SKIP: magpie was built without OpenSeadragon (sh tools/fetch-openseadragon.sh, then rebuild)"; exit 77; }
PY=""
for p in /usr/bin/python3 python3; do
    if "$p" -c "import numpy, PIL, tifffile" 2>/dev/null; then PY=$p; break; fi
done
[ -n "$PY" ] || { echo "SKIP: no python3 with numpy, PIL and tifffile (tools/install-deps.sh installs them)"; exit 77; }
"$B" synth "$T/s" --slides 1 --width 4096 --height 3072 --mpp 0.5 --seed 4 -q || { echo "synth failed"; exit 1; }
"$B" model init --out "$T/r.mpk" --classes 3 --widths 32,32,32,32 >/dev/null &&
"$B" model export "$T/r.mpk" "$T/r.safetensors" >/dev/null &&
"$B" model import "$T/r.safetensors" --out "$T/m.mpk" --mag 1.25 --size 28 --mean 0,0,0 --std 1,1,1 >/dev/null ||
    { echo "model setup failed"; exit 1; }
# --min-tissue 0.6: some cells are left out, so the clear cells are tested too
"$B" infer "$T/m.mpk" "$T/s/synth_000.tiff" --out "$T/o" --min-tissue 0.6 -q || { echo "infer failed"; exit 1; }
# a known pattern: class 2's probability steps across the grid, evaluated cells stay evaluated
"$PY" - "$T/o/synth_000/probability.tif" <<'PYEOF' || { echo "pattern failed"; exit 1; }
import sys, numpy as np, tifffile
p = tifffile.imread(sys.argv[1])
ny, nx, K = p.shape
valid = p.any(axis=2)
q = np.zeros_like(p)
for j in range(ny):
    for i in range(nx):
        v = 20 + (37 * i + 71 * j) % 216
        q[j, i] = [(255 - v) // 2, 255 - v - (255 - v) // 2, v] if valid[j, i] else [0, 0, 0]
tifffile.imwrite(sys.argv[1], q, photometric="minisblack", planarconfig="contig")
PYEOF
# a run over the same slide: its dataset (mask, patch grid, patch browser) and report; the
# slide keeps the pattern's heatmap (the infer folder is given first)
printf 'slide,label\n%s,Tumor\n' "$T/s/synth_000.tiff" >"$T/a.csv"
"$B" run "$T/a.csv" --out "$T/run" --model "$T/m.mpk" -q || { echo "magpie run failed"; exit 1; }
"$B" view "$T/o" "$T/run" --port 0 >"$T/log" 2>"$T/err" &
PID=$!
PORT=""
for i in $(seq 1 100); do
    PORT=$(sed -n 's|^magpie view: http://127.0.0.1:\([0-9]*\)/$|\1|p' "$T/log")
    [ -n "$PORT" ] && break
    sleep 0.1
done
[ -n "$PORT" ] || { echo "magpie view did not start: $(cat "$T/err")"; exit 1; }
SHOTS="${VIEW_SHOTS:-$T}"
mkdir -p "$SHOTS"
timeout 240 "$PY" "$MAGPIE_SRC/tests/view/browser_check.py" "$PORT" "$T/o/synth_000" "$SHOTS" "$T/run"
rc=$?
[ $rc -eq 77 ] && exit 77
[ $rc -eq 0 ] || { echo "browser log: $(grep -v dbus "$SHOTS/browser.log" | tail -5)"; exit 1; }
exit 0
