#!/bin/sh
# bench/infer/run.sh — `magpie infer` against the Python peer (../shared/peers/torch_infer.py:
# openslide-python reads, skimage Otsu mask, PyTorch batches of the same ResNet-GN) on one
# synthetic 40x slide of >= 1 gigapixel, at 10x/224 px and 1.25x/28 px, same thread count,
# alternating runs, medians over repeats. Peak RSS from /usr/bin/time -v.
# Usage: sh bench/infer/run.sh [BUILD_DIR] [WORK_DIR] [REPEATS] [THREADS]
# Prints a Markdown section for BENCHMARKS.md on stdout; raw lines go to WORK_DIR/raw.txt.
set -eu
BUILD=${1:-build}
W=${2:-/tmp/magpie-bench-infer}
REP=${3:-3}
TH=${4:-2}
B="$BUILD/pipelines/magpie"
PEER=$(cd "$(dirname "$0")/../.." && pwd)/../shared/peers/torch_infer.py
[ -x "$B" ] || { echo "no magpie binary at $B" >&2; exit 1; }
[ -f "$PEER" ] || { echo "no peer script at $PEER" >&2; exit 1; }
/usr/bin/python3 -c "import skimage, torch, openslide" 2>/dev/null || {
    echo "the peer needs python3-skimage, python3-torch, python3-openslide (apt-get install -y python3-skimage)" >&2; exit 1; }
mkdir -p "$W"
SW=36864 SH=30720 # 1.13 Gpx at 0.25 µm/px
SL="$W/slide/synth_000.tiff"
if [ ! -f "$SL" ]; then
    echo "generating the ${SW}x${SH} slide ..." >&2
    "$B" synth "$W/slide" --slides 1 --width $SW --height $SH --mpp 0.25 --seed 11 --quiet
fi
# the peer's network: RBD ResNet-GN, 2 classes, random weights (cost, not accuracy)
if [ ! -f "$W/m10.mpk" ]; then
    "$B" model init --out "$W/r.mpk" --classes 2 >/dev/null
    "$B" model export "$W/r.mpk" "$W/r.safetensors" >/dev/null
    "$B" model import "$W/r.safetensors" --out "$W/m10.mpk" --mag 10 --size 224 >/dev/null
    "$B" model import "$W/r.safetensors" --out "$W/m125.mpk" --mag 1.25 --size 28 >/dev/null
fi
RAW="$W/raw.txt"
: >"$RAW"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
rss() { sed -n 's/.*Maximum resident set size (kbytes): //p' "$1"; }
for i in $(seq 1 "$REP"); do
    for cfg in "10 224 1.0 m10.mpk" "1.25 28 8.0 m125.mpk"; do
        set -- $cfg
        mag=$1 px=$2 mppt=$3 ck=$4
        rm -rf "$W/out"
        OPENBLAS_NUM_THREADS=$TH /usr/bin/time -v "$B" infer "$W/$ck" "$SL" --out "$W/out" --threads "$TH" \
            --min-tissue 0.5 --progress none -q 2>"$W/time.txt"
        P="$W/out/synth_000/prediction.json"
        n=$(/usr/bin/python3 -c "import json;d=json.load(open('$P'));print(d['patches']['evaluated'],d['timing']['seconds'])")
        echo "magpie $mag $n $(rss "$W/time.txt")" >>"$RAW"
        /usr/bin/time -v /usr/bin/python3 "$PEER" "$SL" "$mppt" "$px" "$TH" "$W/peer.png" >"$W/peer.txt" 2>"$W/time.txt"
        n=$(sed -n 's/^patches \([0-9]*\) seconds \([0-9.]*\).*/\1 \2/p' "$W/peer.txt")
        echo "peer $mag $n $(rss "$W/time.txt")" >>"$RAW"
    done
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
/usr/bin/python3 - "$RAW" "$TH" "$SW" "$SH" "$LOAD0" "$LOAD1" <<'PY'
import sys, statistics as st, subprocess
raw, th, sw, sh = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
load0, load1 = sys.argv[5], sys.argv[6]
rows = [l.split() for l in open(raw) if l.strip()]
cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
field = lambda k: next((l.split(":", 1)[1].strip() for l in cpu.splitlines() if l.startswith(k)), "?")
model, ncpu = field("Model name"), field("CPU(s)")
print("## Inference (bench/infer)\n")
print(f"`sh bench/infer/run.sh` — one synthetic 40x slide {sw}x{sh} ({sw*sh/1e9:.2f} Gpx, 0.25 µm/px, JPEG "
      f"pyramidal TIFF from `magpie synth --seed 11`), RBD ResNet-GN with random weights, 2 classes, "
      f"{th} threads each (magpie: {th} BLAS threads + 1 reader thread; peer: torch.set_num_threads({th})), "
      f"no overlap (stride = patch), medians of {len(rows)//4} alternating runs. Machine: {model}, "
      f"{ncpu} CPUs, shared with other work "
      f"(load average {load0} at the start, {load1} at the end).\n")
print("| mag / patch | tool | patches | s per slide | patches/s | peak RSS | magpie speed-up |")
print("|---|---|---|---|---|---|---|")
for mag, px in (("10", 224), ("1.25", 28)):
    res = {}
    for tool in ("magpie", "peer"):
        r = [x for x in rows if x[0] == tool and x[1] == mag]
        n = int(st.median(float(x[2]) for x in r)); s = st.median(float(x[3]) for x in r)
        m = st.median(float(x[4]) for x in r) / 1024
        res[tool] = (n, s, m)
    for tool in ("magpie", "peer"):
        n, s, m = res[tool]
        ratio = f"{res['peer'][1] / res['magpie'][1]:.2f}x" if tool == "magpie" else ""
        name = "magpie infer" if tool == "magpie" else "torch_infer.py (peer)"
        print(f"| {mag}x / {px} px | {name} | {n} | {s:.2f} | {n / s:.1f} | {m:.0f} MiB | {ratio} |")
print("\nPatch counts differ because the tissue masks differ (magpie: the tiler's mask, cells whose patch "
      "is >= 50 % tissue; peer: Otsu on HSV saturation at the cell centre). magpie's time includes the "
      "four output files (pyramidal TIFF, overlay PNG, GeoJSON, JSON); the peer writes one PNG.")
PY
