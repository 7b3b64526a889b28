#!/bin/sh
# bench/distill on a labelled dataset of imported patch folders (--dataset, the path real data
# takes): slides are synthesized and tiled, exported as class folders, imported with
# `db import-patches` and split; run.sh then makes the same four-row table from it, reads the
# dataset without changing a byte, skips finished rows on a rerun, and refuses a missing file, a
# file that is not a dataset, magnifications the dataset lacks and --torch without PyTorch, each
# with its one-line error and before writing anything. Tiny epochs: this checks the path, not the numbers.
set -u
T=$(mktemp -d /tmp/mp_distill_dataset.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
no() { echo "FAIL: $*"; fail=1; }
want() { grep -qF -- "$1" "$2" || no "want '$1' in $2: $(cat "$2")"; }
M=$MAGPIE_BIN
RUN="$MAGPIE_SRC/bench/distill/run.sh"
export MAGPIE="$M" DISTILL_PLOT="$1" THREADS=1 TEACHER_EPOCHS=2 LABEL_EPOCHS=2 RBD_EPOCHS=2

"$M" synth "$T/s" --slides 12 --width 1024 --height 1024 --mpp 1.0 --purity 1 --pen 0 --dust 0 --seed 5 --quiet ||
    no "synth"
"$M" tile "$T/t.db" "$T"/s/*.tiff --mags 10 --size 128 -q 2>/dev/null
"$M" db "$T/t.db" labels import "$T/s/slides.csv" >/dev/null || no "labels import"
"$M" db "$T/t.db" export --format imagefolder --out "$T/ex" --mag 10 >/dev/null 2>&1 || no "export"
"$M" db "$T/i.db" import-patches "$T/ex/unsplit" --mpp 1.0 --mags 10,1.25 --patient-from 'regex:(synth_[0-9]+)' -q ||
    no "import-patches"
"$M" db "$T/i.db" split --by patient --ratios 2,1,1 --stratify none --unlabeled-ratio 0.3 --seed 3 >/dev/null || no "split"
before=$(sha256sum "$T/i.db" | cut -d' ' -f1)

cd "$MAGPIE_SRC" || exit 1
W=$T/w
sh "$RUN" "$W" --dataset "$T/i.db" --data-seeds 7 --train-seeds 1 >"$T/out" 2>"$T/err" || no "run.sh --dataset: $(tail -3 "$T/err")"
[ "$(sha256sum "$T/i.db" | cut -d' ' -f1)" = "$before" ] || no "run.sh changed the dataset it was given"
R=$W/results.md
want "data: dataset \`$T/i.db\`; teacher @10x, students @1.25x" "$R"
want "| teacher @10x | CE on the labelled train patches | 128 | 0.1644 |" "$R"
want "| baseline @1.25x | CE on the same labels | 16 | 0.0039 |" "$R"
want "| RBD @1.25x |" "$R"
want "| all labels @1.25x |" "$R"
want "FLOPs teacher/student 41.7x" "$R"
for row in teacher baseline rbd all_labels; do
    want "| dataset | 7 | 1 | $row | " "$R"
    [ -s "$W/dataset/d7/t1/$row.eval.json" ] || no "no evaluation of $row"
done
want "Plots: results.svg / results.png beside this file." "$R"
want "RBD @1.25x" "$W/results.svg"
python3 - "$W/results.json" <<'EOF' || no "results.json: rows or counts wrong"
import json, sys
r = json.load(open(sys.argv[1]))["regimes"]["dataset"]["rows"]
assert sorted(r) == ["all_labels", "baseline", "rbd", "teacher"], sorted(r)
assert all(v["n"] == 1 for v in r.values()), r
EOF
# a rerun in the same WORKDIR trains nothing again
n=$(wc -l < "$W/dataset/d7/t1/times.txt")
sh "$RUN" "$W" --dataset "$T/i.db" --data-seeds 7 --train-seeds 1 >/dev/null 2>"$T/err" || no "rerun: $(tail -1 "$T/err")"
[ "$(wc -l < "$W/dataset/d7/t1/times.txt")" = "$n" ] || no "the rerun trained again: $(cat "$W/dataset/d7/t1/times.txt")"
[ "$n" = 4 ] || no "times.txt has $n rows, want 4"

# bad input: exact error, exit 2, nothing written, nothing created
bad() { # WANT ARGS...
    w=$1
    shift
    rm -rf "$T/wb"
    sh "$RUN" "$T/wb" "$@" --data-seeds 7 --train-seeds 1 >/dev/null 2>"$T/err"
    rc=$?
    [ $rc = 2 ] || no "$* exited $rc, want 2"
    [ "$(cat "$T/err")" = "$w" ] || no "$*: got '$(cat "$T/err")', want '$w'"
    [ -e "$T/wb" ] && no "$*: WORKDIR was created"
}
bad "run.sh: $T/none.db: no such readable file (--dataset)" --dataset "$T/none.db"
[ -e "$T/none.db" ] && no "a missing --dataset file was created"
echo "not a database" > "$T/junk.db"
bad "run.sh: $T/junk.db: not a magpie dataset (no images table)" --dataset "$T/junk.db"
bad "run.sh: $T/i.db has no images at 2.5x (--mags T,S)" --dataset "$T/i.db" --mags 10,2.5
bad "run.sh: --mags 1.25,10: want the teacher's and the student's magnification T,S with T > S > 0, e.g. 10,1.25" \
    --dataset "$T/i.db" --mags 1.25,10
bad "run.sh: --mags 10: want the teacher's and the student's magnification T,S with T > S > 0, e.g. 10,1.25" \
    --dataset "$T/i.db" --mags 10
TORCH_PYTHON=/bin/false bad "run.sh: --torch: /bin/false cannot import torch (Debian: apt-get install python3-torch; or set TORCH_PYTHON)" \
    --dataset "$T/i.db" --torch
[ "$(sha256sum "$T/i.db" | cut -d' ' -f1)" = "$before" ] || no "a refused run changed the dataset"

[ $fail = 0 ] && echo "distill dataset: ok"
exit $fail
