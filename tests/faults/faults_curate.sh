#!/bin/sh
# tests/faults/faults_curate.sh FAULTSHIM — every curation command that changes a dataset runs
# in one transaction: killed at any point of its writes (faultshim: SIGKILL inside the write
# that crosses N bytes of the dataset's files, for many N), the dataset reads exactly as before
# the command or exactly as after it, and passes `magpie db check`.
set -u
SHIM=$1
M="$MAGPIE_BIN"
T=$(mktemp -d /tmp/mp_faultscur.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
no() { echo "FAIL: $*"; fail=1; }
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:verify_asan_link_order=0"

"$M" synth "$T/s" --slides 3 --patients 3 --width 4096 --height 3072 --mpp 0.25 --seed 1 -q || { echo "FAIL: synth"; exit 1; }
B="$T/base.db"
"$M" tile "$B" "$T"/s/*.tiff --mags 10,1.25 --size 112 -j 2 -q 2>/dev/null
"$M" db "$B" labels import "$T/s/slides.csv" "$T/s/synth_000.geojson" "$T/s/synth_002.geojson" -q || no "base labels"
"$M" db "$B" split --ratios 0.5,0.5,0 --stratify none -q || no "base split"
sqlite3 "$B" "PRAGMA wal_checkpoint(TRUNCATE)" > /dev/null

# What a curation command can change, timestamps left out (a run that completes later differs
# only there).
digest() {
    sqlite3 "$1" "
SELECT 'slide', id, path, name, coalesce(label, ''), coalesce(patient, ''), status, n_patches FROM slides ORDER BY id;
SELECT 'patches', count(*), coalesce(sum(id), 0) FROM patches;
SELECT 'images', count(*), coalesce(sum(length(data)), 0) FROM images;
SELECT 'class', id, name FROM classes ORDER BY id;
SELECT 'pl', patch_id, class_id, coverage, source FROM patch_labels ORDER BY patch_id;
SELECT 'imp', id, kind, source, coalesce(slide_id, ''), rows FROM label_imports ORDER BY id;
SELECT 'reg', id, import_id, slide_id, feature, class_id, length(geometry) FROM region_annotations ORDER BY id;
SELECT 'sl', slide_id, import_id, coalesce(label, ''), coalesce(patient, '') FROM slide_labels ORDER BY slide_id;
SELECT 'split', slide_id, split FROM splits ORDER BY slide_id;
SELECT 'fold', slide_id, fold, k FROM folds ORDER BY slide_id;" | md5sum
}

kills=0 runs=0
trial() { # NAME ARGS... (after DB)
    name=$1
    shift
    rm -f "$T"/ref.db*
    cp "$B" "$T/ref.db"
    "$M" db "$T/ref.db" "$@" -q > /dev/null 2>&1 || { no "$name: reference run failed"; return; }
    after=$(digest "$T/ref.db")
    before=$(digest "$B")
    [ "$after" != "$before" ] || [ "$name" = vacuum ] || no "$name: changes nothing (the trial would prove nothing)"
    for bytes in 0 3000 12000 40000 150000 600000; do
        rm -f "$T"/k.db*
        cp "$B" "$T/k.db"
        MP_FAULT=kill MP_FAULT_PATH=k.db MP_FAULT_BYTES=$bytes LD_PRELOAD="$SHIM" \
            "$M" db "$T/k.db" "$@" -q > /dev/null 2> "$T/err"; rc=$?
        runs=$((runs + 1))
        [ $rc -eq 137 ] && kills=$((kills + 1))
        [ $rc -eq 137 ] || [ $rc -eq 0 ] || no "$name: killed after $bytes bytes: exit $rc ($(cat "$T/err"))"
        got=$(digest "$T/k.db")
        [ "$got" = "$before" ] || [ "$got" = "$after" ] || no "$name: killed after $bytes bytes (exit $rc): neither before nor after"
        [ $rc -eq 0 ] && [ "$got" != "$after" ] && no "$name: completed after $bytes bytes but not as the reference"
        "$M" db "$T/k.db" check > "$T/chk" 2>&1 || no "$name: killed after $bytes bytes: db check: $(cat "$T/chk")"
    done
}

printf 'slide,label\nsynth_000,Stroma\nsynth_001,Tumor\n' > "$T/relabel.csv"
trial "labels import CSV" labels import "$T/relabel.csv"
trial "labels import GeoJSON" labels import "$T/s/synth_001.geojson"
trial "labels import GeoJSON again (replaces)" labels import "$T/s/synth_000.geojson"
trial "labels remove --slide" labels remove --slide synth_002
trial "labels remove --source" labels remove --source "$T/s/slides.csv"
trial "slides remove" slides remove synth_000 synth_002
trial "split" split --ratios 0.4,0.3,0.3 --stratify none --seed 7
trial "split --folds" split --folds 3 --stratify none
trial "vacuum" vacuum
[ $kills -ge 15 ] || no "only $kills of $runs runs were killed: the byte offsets miss the commands' writes"
echo "faults-curate: $runs runs, $kills killed mid-write: every dataset as before or as after"
exit $fail
