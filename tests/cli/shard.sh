#!/bin/sh
# tests/cli/shard.sh DIFF — `magpie run --shard I/N` without a cluster:
#  - the N slices of a manifest are disjoint and cover it; each slide's slice does not change
#    when the manifest's rows are reversed, nor when slides are added to it;
#  - SLURM_ARRAY_TASK_ID / _COUNT / _MIN / _STEP give the same slice as --shard; exact errors
#    for bad --shard values and for an array with gaps;
#  - an empty slice is a successful run with an empty dataset; a folder remembers its shard and
#    refuses a run of another one;
#  - the merged shards equal one run over the whole manifest (DIFF = tests/db/dataset_diff.py),
#    with the same class ids, and `magpie report` over the shard folders shows every slide.
set -u
DIFF=$1
M="$MAGPIE_BIN"
T=$(mktemp -d /tmp/mp_shard.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
no() { echo "FAIL: $*"; fail=1; }
has() { grep -qxF "$1" "$2" || no "want line: $1 -- got: $(cat "$2")"; }
names() { sqlite3 "$1/dataset.db" "SELECT name FROM slides ORDER BY name" | tr '\n' ' '; }
run() { "$M" run "$@" --threads 2 --progress none -q 2>>"$T/warnings"; }

"$M" synth "$T/s" --slides 8 --width 2048 --height 2048 --mpp 0.5 --seed 3 -q || { echo "FAIL: synth"; exit 1; }
{
    echo "slide,patient,label,split"
    i=0
    for c in Tumor Stroma Tumor Normal Stroma Normal Tumor Stroma; do
        echo "s/synth_00$i.tiff,p$((i % 3)),$c,$([ $((i % 2)) -eq 0 ] && echo train || echo test)"
        i=$((i + 1))
    done
} >"$T/all.csv"
head -n 7 "$T/all.csv" >"$T/first6.csv"
{ head -n 1 "$T/all.csv"; tail -n +2 "$T/all.csv" | sort -r; } >"$T/reversed.csv"

run "$T/all.csv" --out "$T/whole" || no "the whole run: exit $?"
[ "$(sqlite3 "$T/whole/dataset.db" "SELECT count(*) FROM patches")" -ge 10 ] || no "the whole run has under 10 patches"
all=""
for i in 1 2 3; do
    run "$T/all.csv" --out "$T/sh$i" --shard $i/3; rc=$?
    [ $rc -eq 0 ] || no "--shard $i/3: exit $rc"
    all="$all$(names "$T/sh$i")"
    run "$T/reversed.csv" --out "$T/rev$i" --shard $i/3 || no "reversed --shard $i/3"
    [ "$(names "$T/rev$i")" = "$(names "$T/sh$i")" ] || no "shard $i/3 changed with the row order: $(names "$T/sh$i")/ $(names "$T/rev$i")"
    run "$T/first6.csv" --out "$T/six$i" --shard $i/3 || no "first six --shard $i/3"
    for n in $(names "$T/six$i"); do
        case " $(names "$T/sh$i") " in *" $n "*) ;; *) no "$n moved shards when two slides were added" ;; esac
    done
done
[ "$(echo "$all" | tr ' ' '\n' | grep -c .)" -eq 8 ] || no "the 3 shards hold $(echo "$all" | tr ' ' '\n' | grep -c .) slides, want 8"
[ "$(echo "$all" | tr ' ' '\n' | grep . | sort -u | wc -l)" -eq 8 ] || no "a slide is in two shards: $all"
# merged shards = the whole run, class ids included
"$M" db merge "$T/merged.db" "$T/sh1/dataset.db" "$T/sh2/dataset.db" "$T/sh3/dataset.db" -q || no "merge"
python3 "$DIFF" "$T/whole/dataset.db" "$T/merged.db" >"$T/diff" 2>&1 || no "merged shards differ from the whole run: $(cat "$T/diff")"
cls() { sqlite3 "$1" "SELECT group_concat(id || ':' || name, ' ') FROM (SELECT * FROM classes ORDER BY id)"; }
[ "$(cls "$T/merged.db")" = "$(cls "$T/whole/dataset.db")" ] || no "class ids: $(cls "$T/merged.db") vs $(cls "$T/whole/dataset.db")"
for i in 1 2 3; do
    [ "$(cls "$T/sh$i/dataset.db")" = "$(cls "$T/whole/dataset.db")" ] || no "shard $i's class ids differ from the whole run's"
done
"$M" report "$T/sh1" "$T/sh2" "$T/sh3" --out "$T/report.html" -q || no "magpie report over the shards"
for i in 0 1 2 3 4 5 6 7; do grep -q "synth_00$i" "$T/report.html" || no "the shards' report lacks synth_00$i"; done

# the SLURM variables
for task in 0 1 2; do
    SLURM_ARRAY_TASK_ID=$task SLURM_ARRAY_TASK_COUNT=3 SLURM_ARRAY_TASK_MIN=0 SLURM_ARRAY_TASK_STEP=1 \
        run "$T/all.csv" --out "$T/env$task" || no "SLURM task $task: exit $?"
    [ "$(names "$T/env$task")" = "$(names "$T/sh$((task + 1))")" ] || no "SLURM task $task is not --shard $((task + 1))/3"
done
SLURM_ARRAY_TASK_ID=7 SLURM_ARRAY_TASK_COUNT=3 SLURM_ARRAY_TASK_MIN=5 run "$T/all.csv" --out "$T/env5" ||
    no "SLURM --array=5-7, task 7: exit $?"
[ "$(names "$T/env5")" = "$(names "$T/sh3")" ] || no "SLURM --array=5-7 task 7 is not --shard 3/3"
SLURM_ARRAY_TASK_ID=1 SLURM_ARRAY_TASK_COUNT=3 run "$T/all.csv" --out "$T/whole2" --shard 1/1 || no "--shard 1/1 in an array"
[ "$(names "$T/whole2")" = "$(names "$T/whole")" ] || no "--shard 1/1 inside an array did not run everything"
SLURM_ARRAY_TASK_ID=7 SLURM_ARRAY_TASK_COUNT=3 SLURM_ARRAY_TASK_MIN=1 SLURM_ARRAY_TASK_STEP=4 \
    "$M" run "$T/all.csv" --out "$T/gap" -q 2>"$T/err"; rc=$?
[ $rc -eq 1 ] || no "an array with gaps: exit $rc, want 1"
has "magpie: error: SLURM_ARRAY_TASK_ID=7 does not map onto SLURM_ARRAY_TASK_COUNT=3 slices (min 1, step 4): use a contiguous array such as --array=0-2, or pass --shard I/N" "$T/err"
SLURM_ARRAY_TASK_ID=1 "$M" run "$T/all.csv" --out "$T/gap" -q 2>"$T/err"; rc=$?
[ $rc -eq 1 ] || no "SLURM_ARRAY_TASK_ID without a count: exit $rc, want 1"
has "magpie: error: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; pass --shard I/N" "$T/err"
for bad in 0/3 4/3 3 x/2 1/0 -1/2 1/100001; do
    "$M" run "$T/all.csv" --out "$T/bad" --shard "$bad" 2>"$T/err"; rc=$?
    [ $rc -eq 1 ] || no "--shard $bad: exit $rc, want 1"
    has "magpie: error: run: --shard wants I/N (the I-th of N slices, 1 <= I <= N$(case $bad in 3) ;; *) echo " <= 100000" ;; esac)), got '$bad' (see magpie run --help)" "$T/err"
done
[ -e "$T/bad" ] && no "a bad --shard created the output folder"

# an empty slice: 8 slides over 40 shards leave most empty
empty=""
for i in $(seq 1 40); do
    run "$T/all.csv" --out "$T/e$i" --shard $i/40 || no "--shard $i/40: exit $?"
    [ -z "$empty" ] && [ "$(sqlite3 "$T/e$i/dataset.db" "SELECT count(*) FROM slides")" = 0 ] && empty=$i
    [ -n "$empty" ] && [ $i -gt 3 ] && break
done
[ -n "$empty" ] || no "no empty shard among the first ones of 40"
[ -n "$empty" ] && { [ -s "$T/e$empty/status.csv" ] || no "the empty shard wrote no status.csv"; }
[ -n "$empty" ] && { "$M" db merge "$T/with-empty.db" "$T/e$empty/dataset.db" "$T/sh1/dataset.db" -q || no "merge with an empty shard"; }

# a folder remembers its shard
"$M" run "$T/all.csv" --out "$T/sh1" --shard 2/3 -q 2>"$T/err"; rc=$?
[ $rc -eq 1 ] || no "another shard into a shard's folder: exit $rc, want 1"
has "magpie: error: $T/sh1/dataset.db: this folder holds shard 1/3 of its manifest, and this run is shard 2/3 (--shard 2/3); give each shard its own folder and keep N the same between submissions" "$T/err"
"$M" run "$T/all.csv" --out "$T/whole" --shard 1/2 -q 2>"$T/err"; rc=$?
[ $rc -eq 1 ] || no "a shard into an unsharded run's folder: exit $rc, want 1"
has "magpie: error: $T/whole/dataset.db: this folder holds an unsharded run of its manifest, and this run is shard 1/2 (--shard 1/2); give each shard its own folder and keep N the same between submissions" "$T/err"
run "$T/all.csv" --out "$T/sh1" --shard 1/3 || no "rerun of shard 1/3 in its folder"
echo "shard: 3 slices of 8 slides, stable under reordering and additions, SLURM variables, empty slices, merge = whole run"
exit $fail
