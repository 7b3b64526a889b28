#!/bin/sh
# bench/distill's report on a constructed WORKDIR: every row is the mean ± sd over the cells
# (data seed × training seed), the seeds used during development are listed, the per-cell CI names
# its resampling unit, a one-cell run is flagged as the quick run with no sd, and distill_plot
# draws the table (SVG, PNG through libvips) from the plot.json it writes.
set -u
T=$(mktemp -d /tmp/mp_distill_report.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
no() { echo "FAIL: $*"; fail=1; }
want() { grep -qF -- "$1" "$2" || no "want '$1' in $2: $(cat "$2")"; }
REPORT="$MAGPIE_SRC/bench/distill/report.py"
PLOT="$1"

cell() { # DIR ROW BACC MAG PX
    mkdir -p "$1"
    printf '{"balanced_accuracy":{"value":%s,"ci":[%s,%s]},"ci_unit":"slide","ci_units":54,"slide_vote_balanced_accuracy":%s,"flops_per_patch":%s,"input_size":%s,"mag":%s}\n' \
        "$3" "$(awk "BEGIN{printf \"%.2f\", $3 - 0.02}")" "$(awk "BEGIN{printf \"%.2f\", $3 + 0.01}")" "$3" "$( [ "$4" = 10 ] && echo 657500000 || echo 10300000)" "$5" "$4" > "$1/$2.eval.json"
    echo "$1/$2.mpk: 40 epochs, 400 steps in 10.0 s; best validation balanced accuracy 0.9 (epoch 15)" > "$1/$2.train.txt"
    echo "$2 12.5" >> "$1/times.txt"
}
W=$T/w
mkdir -p "$W"
echo '{"quick": 0, "data_seeds": "11,12", "train_seeds": "1,2", "regimes": "mild", "dev_data_seeds": "1", "dev_train_seeds": "1,2,3,4,5", "dataset": "", "teacher_mag": 10, "student_mag": 1.25, "sweep": 0, "slides": 318, "threads": 2}' > "$W/config.json"
# RBD balanced accuracy over the four cells: 0.90 0.92 0.94 0.96 -> mean 93.0, sd 2.58
i=0
for d in 11 12; do
    for t in 1 2; do
        c=$W/mild/d$d/t$t
        cell "$c" teacher 0.99 10 256
        cell "$c" baseline 0.7 1.25 32
        cell "$c" rbd "0.9$((i * 2))" 1.25 32
        cell "$c" all_labels 0.95 1.25 32
        i=$((i + 1))
    done
done
python3 "$REPORT" "$W" > "$W/results.md" 2>"$T/e" || no "report.py: $(cat "$T/e")"
want "| RBD @1.25x |" "$W/results.md"
want "93.0 ± 2.6 (n = 4)" "$W/results.md"
want "| baseline @1.25x |" "$W/results.md"
want "70.0 ± 0.0 (n = 4)" "$W/results.md"
want "| all labels @1.25x |" "$W/results.md"
want "data seed 1 (never drawn here), training seeds 1,2,3,4,5" "$W/results.md"
want "data seeds (fresh, drawn at run time unless given): 11,12" "$W/results.md"
want "54 slides)" "$W/results.md"
want "RBD − baseline +23.0" "$W/results.md"
want "do not overlap" "$W/results.md"
grep -q "QUICK RUN" "$W/results.md" && no "a four-cell run is marked as the quick run"
grep -q "PyTorch side by side" "$W/results.md" && no "a PyTorch section without any PyTorch rows"
# run.sh --torch: PyTorch rows of two mild cells and one 40x cell, compared on the cells that ran both
mkdir -p "$W/mild/d11/t1/torch" "$W/mild/d11/t2/torch"
echo '{"teacher":{"balanced_accuracy":0.98},"baseline":{"balanced_accuracy":0.74},"rbd":{"balanced_accuracy":0.92}}' \
    > "$W/mild/d11/t1/torch/results.json"
echo '{"teacher":{"balanced_accuracy":0.99},"baseline":{"balanced_accuracy":0.75},"rbd":{"balanced_accuracy":0.93}}' \
    > "$W/mild/d11/t2/torch/results.json"
c=$W/mild-40x/d11/t1
cell "$c" teacher 0.99 10 256
cell "$c" baseline 0.6 1.25 32
cell "$c" rbd 0.9 1.25 32
mkdir -p "$c/torch"
echo '{"teacher":{"balanced_accuracy":0.99},"baseline":{"balanced_accuracy":0.61}}' > "$c/torch/results.json"
python3 "$REPORT" "$W" > "$W/results.md" 2>"$T/e" || no "report.py with PyTorch rows: $(cat "$T/e")"
want "| mild | teacher @10x | 2 | 99.0 ± 0.0 (n = 2) | 98.5 ± 0.7 (n = 2) | +0.5 | yes |" "$W/results.md"
want "| mild | baseline @1.25x | 2 | 70.0 ± 0.0 (n = 2) | 74.5 ± 0.7 (n = 2) | -4.5 | **no** |" "$W/results.md"
want "| mild | RBD @1.25x | 2 | 91.0 ± 1.4 (n = 2) | 92.5 ± 0.7 (n = 2) | -1.5 | yes |" "$W/results.md"
want "| mild, slides at 40x | baseline @1.25x | 1 | 60.0 (n = 1, no sd) | 61.0 (n = 1, no sd) | -1.0 | yes |" "$W/results.md"
want "mild RBD @1.25x d11/t1 90.0/92.0, d11/t2 92.0/93.0" "$W/results.md"
grep -q "| mild, slides at 40x | RBD" "$W/results.md" && no "a 40x RBD row without a PyTorch RBD result"
want '"difference": -4.5' "$W/results.json"
# the 40x cell paired with the cell of the same seeds at 1 µm/px
want "| 11 | 1 | baseline @1.25x | 70.0 | 60.0 | -10.0 |" "$W/results.md"
want "| 11 | 1 | RBD @1.25x | 90.0 | 90.0 | +0.0 |" "$W/results.md"
want '"mild, slides at 40x"' "$W/plot.json" # the 40x cells drawn as a group of the chart
rm -rf "$W/mild-40x" "$W/mild/d11/t1/torch" "$W/mild/d11/t2/torch"
if [ -x "$PLOT" ]; then
    "$PLOT" "$W/plot.json" "$W/results" 2>"$T/e" || no "distill_plot: $(cat "$T/e")"
    want "RBD @1.25x" "$W/results.svg"
    want ">93.0</text>" "$W/results.svg"
    [ "$(head -c 4 "$W/results.png" | od -An -tx1 | tr -d ' \n')" = 89504e47 ] || no "results.png is not a PNG"
else
    no "distill_plot not built at '$PLOT'"
fi
# one cell, quick: flagged, no sd
rm -rf "$W/mild/d12" "$W/mild/d11/t2"
sed -i 's/"quick": 0/"quick": 1/' "$W/config.json"
python3 "$REPORT" "$W" > "$W/results.md" 2>"$T/e" || no "report.py quick: $(cat "$T/e")"
want "QUICK RUN" "$W/results.md"
want "90.0 (n = 1, no sd)" "$W/results.md"
want "no interval over seeds" "$W/results.md"
# an --at-40x-only WORKDIR: no main table, the 40x cells listed unpaired
W4=$T/w40
mkdir -p "$W4"
cp "$W/config.json" "$W4/config.json"
cell "$W4/mild-40x/d11/t1" teacher 0.99 10 256
cell "$W4/mild-40x/d11/t1" baseline 0.6 1.25 32
cell "$W4/mild-40x/d11/t1" rbd 0.9 1.25 32
python3 "$REPORT" "$W4" > "$W4/results.md" 2>"$T/e" || no "report.py, 40x only: $(cat "$T/e")"
want "No finished rows on slides at 1.0 µm/px" "$W4/results.md"
want "| 11 | 1 | RBD @1.25x | — | 90.0 | — |" "$W4/results.md"
grep -q "## Table" "$W4/results.md" && no "an empty main table in a 40x-only report"
exit $fail
