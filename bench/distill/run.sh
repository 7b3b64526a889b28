#!/bin/sh
# bench/distill/run.sh — the RBD paper's table on synthetic slides, in SYNTH.md's regime (few
# labels, many unlabeled patches): teacher @10x, baseline CE student @1.25x, RBD, CRCKD and
# RBD+CRCKD students @1.25x. Patient-disjoint slide-level splits via `magpie db split`.
# Usage: sh bench/distill/run.sh [WORKDIR] [--torch]   (needs a built ./build; results → WORKDIR/results.md)
set -eu
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
W=${1:-/tmp/magpie-distill}
TORCH=${2:-}
# a private copy of the binary, so rebuilding the tree during a long run changes nothing
cp "${MAGPIE:-$ROOT/build/pipelines/magpie}" "$W/magpie" 2>/dev/null || { mkdir -p "$W"; cp "${MAGPIE:-$ROOT/build/pipelines/magpie}" "$W/magpie"; }
M=$W/magpie
THREADS=${THREADS:-2}
SEED=${SEED:-1}
mkdir -p "$W"
export OPENBLAS_NUM_THREADS=$THREADS

# STAGE=students skips data and teacher, STAGE=rbd also the baseline (continue an interrupted run)
STAGE=${STAGE:-all}
# 1. data: 318 single-class slides of 4x4 patches (224 px @10x, 28 px @1.25x), two slides per patient
cc -O2 -I"$ROOT" -I"$ROOT/build" bench/distill/mkdata.c build/synth/libmp_synth.a build/db/libmp_db.a \
   build/common/libmp_common.a $(pkg-config --libs vips sqlite3 jansson libturbojpeg zlib) -lcsv -lm -lpthread \
   -o "$W/mkdata"
t0=$(date +%s)
if [ "$STAGE" = all ]; then
"$W/mkdata" "$W/distill.db" "$W/labels.csv" ${SLIDES:-318} 4 "$SEED" ${NUISANCE:-mild} "$THREADS"
"$M" db "$W/distill.db" labels import "$W/labels.csv"
# per class 53 patients: 40 held out unlabeled, then 2 train / 2 val / 9 test
"$M" db "$W/distill.db" split --by patient --ratios 2,2,9 --stratify label --unlabeled-ratio 0.755 --seed "$SEED"
t1=$(date +%s)
echo "data: $((t1 - t0)) s"
fi

train() { # name, args...
    name=$1; shift
    s=$(date +%s.%N)
    "$M" train "$W/distill.db" --out "$W/$name.mpk" --threads "$THREADS" --seed "$SEED" --progress=none "$@"
    e=$(date +%s.%N)
    echo "$name $(echo "$e - $s" | bc)" >> "$W/times.txt"
}
if [ "$STAGE" = all ]; then
: > "$W/times.txt"
train teacher  --method supervised --mag 10   --epochs ${TEACHER_EPOCHS:-25} --patience 8
fi
[ "$STAGE" = rbd ] || train baseline --method supervised --mag 1.25 --epochs 60 --patience 15
train rbd      --method rbd        --mag 1.25 --teacher "$W/teacher.mpk" --teacher-views 4 --teacher-cache "$W/tcache.mpk" \
               --epochs ${RBD_EPOCHS:-30} --patience ${RBD_PATIENCE:-10}
train crckd    --method crckd      --mag 1.25 --epochs 60 --patience 15
train rbd_crckd --method rbd+crckd --mag 1.25 --teacher "$W/teacher.mpk" --teacher-views 4 --teacher-cache "$W/tcache.mpk" \
               --epochs ${BOTH_EPOCHS:-30} --patience ${RBD_PATIENCE:-10}
for n in teacher baseline rbd crckd rbd_crckd; do
    "$M" eval "$W/distill.db" "$W/$n.mpk" --split test --json --threads "$THREADS" > "$W/$n.eval.json"
done
t2=$(date +%s)
echo "magpie total: $((t2 - t0)) s" | tee "$W/total.txt"

if [ "$TORCH" = "--torch" ]; then
    /usr/bin/python3 tools/export_patches.py "$W/distill.db" "$W/export"
    /usr/bin/python3 tools/torch_distill.py "$W/export" "$W/torch" --threads "$THREADS" --seed "$SEED"
fi
/usr/bin/python3 bench/distill/report.py "$W" > "$W/results.md"
cat "$W/results.md"
