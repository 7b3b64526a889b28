#!/bin/sh
# bench/infer/run.sh — `magpie infer` against the Python peer (../shared/peers/torch_infer.py:
# openslide-python reads, skimage Otsu mask, PyTorch batches of the ResNet-GN; run through
# bench/infer/peer.py so it gets the same weights) on a >= 1-gigapixel real-tissue pyramid: the
# TCGA slide of ../shared/data replicated 8x8 with `vips replicate` and saved as a JPEG Q90
# pyramidal TIFF at 0.25 µm/px (35544x28536, built in WORK_DIR once). Teacher 10x/256 px and
# student 1.25x/32 px (bench/infer/quality.sh's models when MODELS=DIR holds teacher.mpk and
# student.mpk, else freshly initialised ones: cost does not depend on the weights), stride =
# patch, same thread count, alternating runs, medians over repeats. Each repeat also measures
# the OpenBLAS sgemm rate (build/bench/bench_nn --gemm-peak), the compute limit's denominator,
# and the network alone (bench_nn --infer, batch 8 at 256 px) on CPU time.
# Wall and CPU time (user + sys) and peak RSS from /usr/bin/time.
# Usage: sh bench/infer/run.sh [BUILD_DIR] [WORK_DIR] [REPEATS] [THREADS]
#   env MODELS=DIR, MIN_TISSUE (magpie's --min-tissue, default 0.6: about the peer's cell count),
#   BIG=SLIDE (also a student and a teacher run on that slide, for peak RSS)
# Prints a Markdown section on stdout; raw lines go to WORK_DIR/raw.txt.
set -eu
BUILD=${1:-build}
W=${2:-/tmp/magpie-bench-infer}
REP=${3:-3}
TH=${4:-2}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$W"
cp "$BUILD/pipelines/magpie" "$W/magpie" # a private copy: rebuilds during the run change nothing
B="$W/magpie"
NN="$BUILD/bench/bench_nn"
PEER="$ROOT/bench/infer/peer.py"
TCGA=${TCGA:-$ROOT/../shared/data/slides/aperio-j2k-tcga-cr-7395/tcga-cr-7395-01a-01-ts1.svs}
MT=${MIN_TISSUE:-0.6}
[ -x "$NN" ] || { echo "no bench_nn at $NN" >&2; exit 1; }
[ -f "$TCGA" ] || { echo "no TCGA slide at $TCGA (../shared/data)" >&2; exit 1; }
/usr/bin/python3 -c "import skimage, torch, openslide" 2>/dev/null || {
    echo "the peer needs python3-skimage, python3-torch, python3-openslide (apt-get install -y python3-skimage)" >&2; exit 1; }
SL="$W/tcga_x64.tif"
if [ ! -f "$SL" ]; then
    echo "building the 8x8 replicate of the TCGA slide ..." >&2
    vips openslideload "$TCGA" "$W/base.v"
    vips extract_band "$W/base.v" "$W/rgb.v" 0 --n 3
    vips replicate "$W/rgb.v" "$SL[tile,pyramid,compression=jpeg,Q=90,tile-width=256,tile-height=256,bigtiff,xres=4000,yres=4000]" 8 8
    rm -f "$W/base.v" "$W/rgb.v"
fi
if [ -n "${MODELS:-}" ]; then
    cp "$MODELS/teacher.mpk" "$W/teacher.mpk"
    cp "$MODELS/student.mpk" "$W/student.mpk"
elif [ ! -f "$W/teacher.mpk" ]; then
    "$B" model init --out "$W/r.mpk" --classes 3 >/dev/null
    "$B" model export "$W/r.mpk" "$W/r.safetensors" >/dev/null
    "$B" model import "$W/r.safetensors" --out "$W/teacher.mpk" --mag 10 --size 256 >/dev/null
    "$B" model import "$W/r.safetensors" --out "$W/student.mpk" --mag 1.25 --size 32 >/dev/null
fi
for m in teacher student; do "$B" model export "$W/$m.mpk" "$W/$m.safetensors" >/dev/null; done
FT=$("$B" model info "$W/teacher.mpk" --size 256 --json | sed -n 's/^ *"flops": \([0-9]*\).*/\1/p')
FS=$("$B" model info "$W/student.mpk" --size 32 --json | sed -n 's/^ *"flops": \([0-9]*\).*/\1/p')

RAW="$W/raw.txt"
: >"$RAW"
LOAD0=$(cat /proc/loadavg)
tv() { # wall user sys rss(KB) from a /usr/bin/time -f file
    tail -1 "$1"
}
run_magpie() { # tag ckpt slide
    rm -rf "$W/out"
    OPENBLAS_NUM_THREADS=$TH /usr/bin/time -f "%e %U %S %M" -o "$W/time.txt" "$B" infer "$W/$2" "$3" --out "$W/out" \
        --threads "$TH" --min-tissue "$MT" --progress none -q
    P=$(ls "$W"/out/*/prediction.json)
    n=$(/usr/bin/python3 -c "import json;d=json.load(open('$P'));t=d['timing'];print(d['patches']['evaluated'],
' '.join('%.4f' % t[k] for k in ('seconds','open_seconds','mask_seconds','inference_seconds','read_seconds','model_seconds','write_seconds')))")
    echo "magpie $1 $(tv "$W/time.txt") $n" >>"$RAW"
}
run_peer() { # tag weights mpp px
    OMP_NUM_THREADS=$TH PEER_WEIGHTS="$W/$2" /usr/bin/time -f "%e %U %S %M" -o "$W/time.txt" /usr/bin/python3 "$PEER" \
        "$SL" "$3" "$4" "$TH" "$W/peer.png" >"$W/peer.txt"
    n=$(sed -n 's/^patches \([0-9]*\) seconds \([0-9.]*\).*/\1 \2/p' "$W/peer.txt")
    echo "peer $1 $(tv "$W/time.txt") $n" >>"$RAW"
}
for i in $(seq 1 "$REP"); do
    echo "repeat $i/$REP ($(cut -d' ' -f1-3 /proc/loadavg))" >&2
    OPENBLAS_NUM_THREADS=$TH "$NN" --gemm-peak --threads "$TH" | sed 's/^/gemm /' >>"$RAW"
    # the network alone (the teacher's batch of 8, 256 px): its GFLOP per CPU-second against sgemm's
    OPENBLAS_NUM_THREADS=$TH "$NN" --size 256 --batch 8 --threads "$TH" --infer --steps 5 | sed 's/^/net /' >>"$RAW"
    run_magpie student student.mpk "$SL"
    run_peer student student.safetensors 8.0 32
    run_magpie teacher teacher.mpk "$SL"
    run_peer teacher teacher.safetensors 1.0 256
done
if [ -n "${BIG:-}" ]; then
    for m in student teacher; do
        run_magpie "big-$m" "$m.mpk" "$BIG"
    done
fi
LOAD1=$(cat /proc/loadavg)
/usr/bin/python3 "$ROOT/bench/infer/report.py" "$RAW" "$TH" "$FT" "$FS" "$LOAD0" "$LOAD1" "$MT" "${BIG:-}"
