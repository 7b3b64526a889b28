#!/bin/sh
# bench/infer/quality.sh — heatmap quality against synth's ground truth. Trains a 10x teacher and
# a 1.25x RBD student with bench/distill's recipe (single-class 1792 px slides at 1.0 µm/px,
# 256/32 px patches, patient-disjoint splits), then infers held-out mixed-class slides (another
# seed, purity 0.6: several classes per slide) and scores every heatmap cell against the class
# mask synth drew (bench/infer/score.py): per-class AUC and Dice at the best threshold, at
# stride = patch and stride = half a patch. Validation slides (a third seed) are inferred too:
# they are where a cascade threshold may be chosen, never the scored slides.
# Usage: sh bench/infer/quality.sh [WORKDIR]   (needs ./build; env: SLIDES, TEACHER_EPOCHS,
#        RBD_EPOCHS, VIEWS, TEST_SLIDES, TEST_SIDE, THREADS, NUISANCE (synth's preset for every
#        slide: mild, the default, or strong); STAGE=student reuses the data and the teacher,
#        STAGE=infer both models)
set -eu
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
W=${1:-/tmp/magpie-bench-infer-q}
mkdir -p "$W"
cp "${MAGPIE:-$ROOT/build/pipelines/magpie}" "$W/magpie" # a private copy: rebuilds change nothing
M=$W/magpie
TH=${THREADS:-2}
export OPENBLAS_NUM_THREADS=$TH
STAGE=${STAGE:-all}
NU=${NUISANCE:-mild}
now() { date +%s.%N; }

if [ "$STAGE" = all ]; then
    t0=$(now)
    rm -rf "$W/slides" "$W/train.db" "$W/train.db-wal" "$W/train.db-shm"
    # bench/distill/run.sh's data, same seed
    "$M" synth "$W/slides" --slides "${SLIDES:-318}" --width 1792 --height 1792 --mpp 1.0 --purity 1 --pen 0 --dust 0 \
        --nuisance "$NU" --seed 1 --jobs "$TH" --quiet
    "$M" tile "$W/train.db" "$W"/slides/*.tiff --mags 10,1.25 --size 256 --jobs "$TH" -q
    "$M" db "$W/train.db" labels import "$W/slides/slides.csv" >/dev/null
    "$M" db "$W/train.db" split --by patient --ratios 2,2,9 --stratify label --unlabeled-ratio 0.755 --seed 1 >/dev/null
    t1=$(now)
    "$M" train "$W/train.db" --out "$W/teacher.mpk" --method supervised --mag 10 --epochs "${TEACHER_EPOCHS:-25}" \
        --patience 8 --threads "$TH" --seed 1 --progress=none
    t2=$(now)
    echo "data $(echo "$t1 - $t0" | bc) teacher $(echo "$t2 - $t1" | bc)" >"$W/train_times.txt"
fi
if [ "$STAGE" = all ] || [ "$STAGE" = student ]; then
    t2=$(now)
    "$M" train "$W/train.db" --out "$W/student.mpk" --method rbd --mag 1.25 --teacher "$W/teacher.mpk" \
        --teacher-views "${VIEWS:-2}" --epochs "${RBD_EPOCHS:-30}" --patience 25 --threads "$TH" --seed 1 --progress=none
    t3=$(now)
    echo "student $(echo "$t3 - $t2" | bc)" >>"$W/train_times.txt"
fi

# held-out slides: mixed classes, the same scale and nuisance as training
N=${TEST_SLIDES:-4}
SIDE=${TEST_SIDE:-3072}
for set in test:101 val:202; do
    name=${set%%:*} seed=${set#*:}
    if [ ! -f "$W/$name/slides.csv" ]; then
        "$M" synth "$W/$name" --slides "$N" --width "$SIDE" --height "$SIDE" --mpp 1.0 --purity 0.6 --pen 0 --dust 0 \
            --nuisance "$NU" --seed "$seed" --jobs "$TH" --quiet
    fi
done

# every model x stride x set; stride in model px (256/32 = patch, 128/16 = half)
for set in test val; do
    for run in teacher:256 teacher:128 student:32 student:16; do
        ck=${run%%:*} st=${run#*:}
        "$M" infer "$W/$ck.mpk" "$W/$set"/*.tiff --out "$W/out/$set/$ck-$st" --stride "$st" --float32 \
            --threads "$TH" --progress none -q
    done
done
# the cascade (when this magpie has it): the student everywhere, the teacher where the student is
# unsure, the threshold chosen on the training dataset's val split (never on these slides)
if "$M" infer --help 2>&1 | grep -q -- --cascade-calibrate; then
    for set in test val; do
        for st in 32 16; do
            "$M" infer "$W/student.mpk" "$W/$set"/*.tiff --out "$W/out/$set/cascade-$st" --stride "$st" --float32 \
                --cascade "$W/teacher.mpk" --cascade-calibrate "$W/train.db" --threads "$TH" --progress none -q
        done
    done
fi
# the cascade calibrated on the validation slides (seed 202; no labels: the teacher's class per
# cell is the reference), applied to the test slides; the calibration's own time is logged apart
if "$M" infer --help 2>&1 | grep -q -- --cascade-calibrate-slides; then
    VAL=$(ls "$W"/val/*.tiff | paste -sd, -)
    for st in 32 16; do
        t0=$(now)
        "$M" infer "$W/student.mpk" "$W/test"/*.tiff --out "$W/out/test/cascade-slides-$st" --stride "$st" --float32 \
            --cascade "$W/teacher.mpk" --cascade-calibrate-slides "$VAL" --threads "$TH" --progress none \
            2>"$W/out/cascade-slides-$st.log"
        echo "cascade-slides-$st: whole process $(echo "$(now) - $t0" | bc) s; $(grep '^cascade threshold' "$W/out/cascade-slides-$st.log")" \
            >>"$W/out/calibration.txt"
    done
fi
/usr/bin/python3 bench/infer/score.py "$W" | tee "$W/quality.md"
