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
# 1. data, through magpie's own pipeline: `magpie synth` renders 318 single-class slides of
# 1792x1792 px at 1.0 µm/px (level 0 = 10x; tissue islands, mild nuisance, no pen or dust), two
# slides per patient; `magpie tile` cuts 256 px patches at 10x with their 32 px 1.25x image (from
# the TIFF pyramid) wherever the tissue mask covers half the cell (~16 per slide);
# `magpie db labels import` reads synth's slides.csv. 256 px, not 224: the network's total stride
# is 32, so a 32 px student input keeps every stage at exactly 1/8 the teacher's side and the
# student costs 1/64 of the teacher's FLOPs (at 224/28 px the last stages round up to 2x2 and
# 1x1 maps and the ratio is 55x).
t0=$(date +%s)
if [ "$STAGE" = all ]; then
rm -rf "$W/slides" "$W/distill.db" "$W/distill.db-wal" "$W/distill.db-shm"
"$M" synth "$W/slides" --slides ${SLIDES:-318} --width 1792 --height 1792 --mpp 1.0 --purity 1 --pen 0 --dust 0 \
    --nuisance ${NUISANCE:-mild} --seed "$SEED" --jobs "$THREADS" --quiet
"$M" tile "$W/distill.db" "$W"/slides/*.tiff --mags 10,1.25 --size 256 --jobs "$THREADS" -q
"$M" db "$W/distill.db" labels import "$W/slides/slides.csv"
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
# The students use magpie's default schedules (the label-only rows: epochs for ~1000 steps, here
# 143 with patience 35; the RBD rows: the paper's 100 epochs, patience 25); LABEL_EPOCHS,
# LABEL_PATIENCE, RBD_EPOCHS, BOTH_EPOCHS and RBD_PATIENCE override them on both sides.
opt() { [ -n "$2" ] && echo "$1 $2" || true; }
LAB="$(opt --epochs "${LABEL_EPOCHS:-}") $(opt --patience "${LABEL_PATIENCE:-}")"
[ "$STAGE" = rbd ] || train baseline --method supervised --mag 1.25 $LAB
train rbd      --method rbd        --mag 1.25 --teacher "$W/teacher.mpk" --teacher-views ${VIEWS:-4} --teacher-cache "$W/tcache.mpk" \
               $(opt --epochs "${RBD_EPOCHS:-}") $(opt --patience "${RBD_PATIENCE:-}")
train crckd    --method crckd      --mag 1.25 $LAB
train rbd_crckd --method rbd+crckd --mag 1.25 --teacher "$W/teacher.mpk" --teacher-views ${VIEWS:-4} --teacher-cache "$W/tcache.mpk" \
               $(opt --epochs "${BOTH_EPOCHS:-}") $(opt --patience "${RBD_PATIENCE:-}")
for n in teacher baseline rbd crckd rbd_crckd; do
    "$M" eval "$W/distill.db" "$W/$n.mpk" --split test --json --threads "$THREADS" > "$W/$n.eval.json"
done
t2=$(date +%s)
echo "magpie total: $((t2 - t0)) s" | tee "$W/total.txt"

if [ "$TORCH" = "--torch" ]; then
    /usr/bin/python3 tools/export_patches.py "$W/distill.db" "$W/export"
    /usr/bin/python3 tools/torch_distill.py "$W/export" "$W/torch" --threads "$THREADS" --seed "$SEED" --views ${VIEWS:-4} \
        --epochs "teacher=${TEACHER_EPOCHS:-25}${LABEL_EPOCHS:+,baseline=$LABEL_EPOCHS,crckd=$LABEL_EPOCHS}${RBD_EPOCHS:+,rbd=$RBD_EPOCHS}${BOTH_EPOCHS:+,rbd_crckd=$BOTH_EPOCHS}" \
        --patience "teacher=8${LABEL_PATIENCE:+,baseline=$LABEL_PATIENCE,crckd=$LABEL_PATIENCE}${RBD_PATIENCE:+,rbd=$RBD_PATIENCE,rbd_crckd=$RBD_PATIENCE}"
fi
/usr/bin/python3 bench/distill/report.py "$W" > "$W/results.md"
cat "$W/results.md"
