#!/bin/sh
# bench/synth/run.sh — speed and memory of `magpie synth`, side by side with libvips re-encoding
# the same pixels (tiffsave of magpie's own slide: JPEG decode + pyramid + JPEG encode, the floor
# any TIFF writer pays). Workload: the distillation benchmark's (SLIDES slides of SIZE² px at
# 1 µm/px), then one 20000x16000 40x slide (MID=0 skips it); BIG=1 adds a 100000x80000 40x
# slide: peak RSS must stay bounded whatever the slide size.
# usage: sh bench/synth/run.sh [OUTDIR]     (env: SLIDES=25 SIZE=5000 MID=1 BIG=0 MAGPIE_BIN=...)
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
B=${MAGPIE_BIN:-$ROOT/build/pipelines/magpie}
OUT=${1:-/tmp/magpie_bench_synth}
SLIDES=${SLIDES:-25}
SIZE=${SIZE:-5000}
MID=${MID:-1}
BIG=${BIG:-0}
rm -rf "$OUT"
mkdir -p "$OUT"

# timed LABEL CMD...: wall s, cpu s, peak RSS MiB into $OUT/LABEL.time
timed() {
    label=$1
    shift
    /usr/bin/time -f '%e %U %S %M' -o "$OUT/$label.time" "$@"
}
field() { awk -v k="$2" '{ if (k == "wall") print $1; else if (k == "cpu") print $2 + $3; else print $4 / 1024 }' "$OUT/$1.time"; }

timed synth "$B" synth "$OUT/slides" --slides "$SLIDES" --width "$SIZE" --height "$SIZE" --mpp 1 --seed 1 --quiet
mpx=$(awk -v n="$SLIDES" -v s="$SIZE" 'BEGIN { print n * s * s / 1e6 }')
first="$OUT/slides/synth_000.tiff"
timed vips vips tiffsave "$first" "$OUT/vips_copy.tiff" --tile --pyramid --compression jpeg --Q 90 \
    --tile-width 256 --tile-height 256
mpx1=$(awk -v s="$SIZE" 'BEGIN { print s * s / 1e6 }')

printf '\nmachine: %s, %s cores, load %s\n' "$(uname -m)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-44s %9s %9s %9s %9s %9s\n' "run" "Mpx" "wall s" "Mpx/s" "Mpx/cpu-s" "RSS MiB"
row() { # label mpx name
    w=$(field "$1" wall) c=$(field "$1" cpu) r=$(field "$1" rss)
    awk -v l="$3" -v m="$2" -v w="$w" -v c="$c" -v r="$r" \
        'BEGIN { printf "%-44s %9.1f %9.2f %9.1f %9.1f %9.0f\n", l, m, w, m / w, m / c, r }'
}
row synth "$mpx" "magpie synth ${SLIDES}x ${SIZE}² @1 µm/px (all outputs)"
row vips "$mpx1" "vips tiffsave of one of those slides (peer)"
if [ "$MID" = 1 ]; then
    timed mid "$B" synth "$OUT/mid" --slides 1 --width 20000 --height 16000 --mpp 0.25 --quiet
    row mid 320 "magpie synth 20000x16000 @0.25 µm/px"
    rm -f "$OUT/mid/synth_000.tiff"
fi
if [ "$BIG" = 1 ]; then
    timed big "$B" synth "$OUT/big" --slides 1 --width 100000 --height 80000 --mpp 0.25 --quiet
    row big 8000 "magpie synth 100000x80000 @0.25 µm/px"
    rm -f "$OUT/big/synth_000.tiff"
fi
echo "reference: the numpy prototype of SYNTH.md, ~10 ms per 224² patch = 5.0 Mpx/s on one core (not run here)"
