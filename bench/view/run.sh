#!/bin/sh
# bench/view: magpie view's tile throughput and latency under 8 concurrent keep-alive clients on
# the loopback, against the same Deep Zoom tiles written by `vips dzsave` and served as static
# files by python3 -m http.server, in the same run. magpie is measured cold (empty cache) and
# warm (the same tiles again). Usage: sh bench/view/run.sh [BUILD] [REPEATS]
set -eu
BUILD=${1:-build}
R=${2:-3}
M=$BUILD/pipelines/magpie
T=$(mktemp -d /tmp/mp_bench_view.XXXXXX)
PIDS=""
trap 'for p in $PIDS; do kill "$p" 2>/dev/null; done; rm -rf "$T"' EXIT
HERE=$(dirname "$0")
"$M" synth "$T/s" --slides 1 --width 16384 --height 12288 --mpp 0.25 --seed 7 -q
vips dzsave "$T/s/synth_000.tiff" "$T/dz/slide" --tile-size 254 --overlap 1 --suffix ".jpeg[Q=85]"
# every tile of the three finest levels, in the order a viewer panning row by row asks them
max=$(python3 -c "import math; print(math.ceil(math.log2(16384)))")
(cd "$T/dz" && find slide_files -name '*.jpeg' | awk -F/ -v m="$max" '$2 >= m - 2' | sort) >"$T/files"
sed 's|^slide_files|/s/0/slide_files|' "$T/files" >"$T/magpie.urls"
sed 's|^|/|' "$T/files" >"$T/static.urls"
echo "tiles: $(wc -l <"$T/files") (levels $((max - 2))..$max of a 16384x12288 synthetic slide)"
(cd "$T/dz" && python3 -m http.server 0 --bind 127.0.0.1 >"$T/http.log" 2>&1) &
PIDS="$PIDS $!"
"$M" view "$T/s/synth_000.tiff" --port 0 -q >"$T/view.log" 2>&1 &
PIDS="$PIDS $!"
for i in $(seq 1 100); do
    VP=$(sed -n 's|^magpie view: http://127.0.0.1:\([0-9]*\)/$|\1|p' "$T/view.log")
    SP=$(sed -n 's|.*port \([0-9]*\).*|\1|p' "$T/http.log" | head -1)
    [ -n "$VP" ] && [ -n "$SP" ] && break
    sleep 0.1
done
uptime
echo "run server tiles/s p50_ms p99_ms errors"
for r in $(seq 1 "$R"); do
    # a fresh magpie each repeat, so the cold pass is cold
    if [ "$r" -gt 1 ]; then
        kill "$VPID" 2>/dev/null || true
        "$M" view "$T/s/synth_000.tiff" --port 0 -q >"$T/view.log" 2>&1 &
        PIDS="$PIDS $!"
        VPID=$!
        VP=""
        while [ -z "$VP" ]; do sleep 0.1; VP=$(sed -n 's|^magpie view: http://127.0.0.1:\([0-9]*\)/$|\1|p' "$T/view.log"); done
    else VPID=$(echo $PIDS | awk '{print $NF}'); fi
    echo "$r magpie-cold $(python3 "$HERE/load.py" "$VP" "$T/magpie.urls" 8)"
    echo "$r magpie-warm $(python3 "$HERE/load.py" "$VP" "$T/magpie.urls" 8)"
    echo "$r static $(python3 "$HERE/load.py" "$SP" "$T/static.urls" 8)"
done
uptime
