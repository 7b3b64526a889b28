#!/bin/sh
# tests/db/merge.sh DIFF — `magpie db merge OUT SHARD...` through the binary:
#  1. three shards (with slide labels and patients, region labels, splits, predictions, a failed
#     slide, and predictions of a slide that lives in another shard) merge into a dataset equal,
#     table by table and ignoring id numbering (DIFF = tests/db/dataset_diff.py), to one dataset
#     holding every slide; the same when merging into an existing OUT, in one go or in steps;
#  2. every refusal, with its exact one-line message, exit 2, and OUT left as it was (or not
#     created): a slide in two shards, the same path with other content, different tiling
#     parameters (per-slide min_tissue is fine), an unfinished slide, an unknown table with rows,
#     the target as a shard, a shard given twice, a missing or foreign file, a shard being tiled.
set -u
DIFF=$1
M="$MAGPIE_BIN"
T=$(mktemp -d /tmp/mp_merge.XXXXXX)
holder=""
trap '[ -n "$holder" ] && kill $holder 2>/dev/null; rm -rf "$T"' EXIT
fail=0
no() { echo "FAIL: $*"; fail=1; }
same() { python3 "$DIFF" "$1" "$2" >"$T/diff" 2>&1 || no "$3: $1 differs from $2: $(cat "$T/diff")"; }
has() { grep -qxF "$1" "$2" || no "want line: $1 -- got: $(cat "$2")"; }

"$M" synth "$T/s" --slides 6 --width 2048 --height 2048 --mpp 0.5 --seed 11 -q || { echo "FAIL: synth"; exit 1; }
for i in 0 1 2 3 4 5; do eval "s$i=$T/s/synth_00$i.tiff"; done
echo "not a slide" >"$T/s/bad.svs"
"$M" model init --out "$T/r.mpk" --classes 3 --widths 32,32,32,32 >/dev/null &&
"$M" model export "$T/r.mpk" "$T/r.safetensors" >/dev/null &&
"$M" model import "$T/r.safetensors" --out "$T/m.mpk" --mag 1.25 --size 28 --mean 0,0,0 --std 1,1,1 >/dev/null ||
    { echo "FAIL: model setup"; exit 1; }

# A dataset of the given slides, curated the same way whatever the slides: labels and patients
# from the synth CSV, region labels from each slide's GeoJSON, splits by name, predictions.
build() {
    db=$1
    shift
    "$M" tile "$db" "$@" -q -j 2 2>/dev/null
    # patients and slide labels as a manifest gives them (magpie run writes them so; a CSV import
    # per shard would leave one import record per shard, where the whole dataset has one)
    tail -n +2 "$T/s/slides.csv" | while IFS=, read -r n p l; do
        sqlite3 "$db" "UPDATE slides SET patient = '$p', label = '$l' WHERE name = '$n'" || no "labels into $db"
    done
    for s in "$@"; do
        g="${s%.tiff}.geojson"
        [ -e "$g" ] && { "$M" db "$db" labels import "$g" -q || no "region labels $g into $db"; }
    done
    # by patient, so no patient is in two splits
    sqlite3 "$db" "INSERT INTO splits SELECT id, CASE patient WHEN 'synth_p000' THEN 'train' WHEN 'synth_p001' THEN 'val'
        ELSE 'test' END FROM slides" ||
        no "splits into $db"
}
infer_db() { # DB SLIDE...: predictions into DB
    db=$1
    shift
    "$M" infer "$T/m.mpk" "$@" --out "$T/inf" --db "$db" -q || no "infer --db $db $*"
}

# 1. the reference holds every slide; the shards split them
build "$T/ref.db" "$s0" "$s1" "$T/s/bad.svs" "$s2" "$s3" "$s4"
infer_db "$T/ref.db" "$s0" "$s1" "$s2" "$s3" "$s4" "$s5" # s5: predictions without a slide
[ "$(sqlite3 "$T/ref.db" "SELECT count(*) FROM slides WHERE status = 'failed'")" = 1 ] || no "reference: the bad slide is not recorded as failed"
[ "$(sqlite3 "$T/ref.db" "SELECT count(*) FROM patch_labels")" -gt 0 ] || no "reference: no region labels"
[ "$(sqlite3 "$T/ref.db" "SELECT count(*) FROM slides WHERE patient IS NOT NULL AND label IS NOT NULL")" = 5 ] || no "reference: labels"
build "$T/a.db" "$s0" "$s1" "$T/s/bad.svs"
infer_db "$T/a.db" "$s0" "$s1" "$s2" # s2 is tiled in b.db: merge links these predictions to it
build "$T/b.db" "$s2" "$s3"
infer_db "$T/b.db" "$s3" "$s5"
build "$T/c.db" "$s4"
infer_db "$T/c.db" "$s4"
for d in a b c; do cp "$T/$d.db" "$T/$d.orig.db"; done

"$M" db merge "$T/m.db" "$T/a.db" "$T/b.db" "$T/c.db" 2>"$T/err" || no "merge a b c: exit $? ($(cat "$T/err"))"
has "merged $T/b.db: 2 slides, $(sqlite3 "$T/b.db" "SELECT count(*) FROM patches") patches, $(sqlite3 "$T/b.db" "SELECT count(*) FROM images") images, $(sqlite3 "$T/b.db" "SELECT count(*) FROM predictions") predictions" "$T/err"
same "$T/ref.db" "$T/m.db" "merge of three shards"
[ "$(sqlite3 "$T/m.db" "SELECT count(*) FROM predictions p JOIN slides s ON s.id = p.slide_id WHERE s.name = 'synth_002'")" -gt 0 ] ||
    no "predictions of synth_002 made in a.db are not linked to the slide from b.db"
[ "$(sqlite3 "$T/m.db" "SELECT count(*) FROM predictions WHERE slide_id IS NULL")" = "$(sqlite3 "$T/ref.db" "SELECT count(*) FROM predictions WHERE slide_id IS NULL")" ] ||
    no "predictions without a slide"
"$M" db "$T/m.db" check >"$T/chk" 2>&1 || no "db check of the merged dataset: $(cat "$T/chk")"
for d in a b c; do same "$T/$d.orig.db" "$T/$d.db" "merge changed shard $d"; done
# into an existing OUT: one step, and a shard at a time (the other syntax)
cp "$T/a.db" "$T/e.db"
"$M" db merge "$T/e.db" "$T/b.db" "$T/c.db" -q || no "merge into an existing dataset"
same "$T/ref.db" "$T/e.db" "merge into an existing dataset"
"$M" db "$T/f.db" merge "$T/c.db" -q && "$M" db "$T/f.db" merge "$T/a.db" -q && "$M" db "$T/f.db" merge "$T/b.db" -q ||
    no "merge one shard at a time"
same "$T/ref.db" "$T/f.db" "merge one shard at a time"
# per-slide parameters may differ
"$M" tile "$T/mt.db" "$s5" --min-tissue 0.3 -q || no "tile with --min-tissue"
"$M" db merge "$T/g.db" "$T/a.db" "$T/mt.db" -q || no "shards differing only in min_tissue were refused"

# 2. refusals: exit 2, one exact line, OUT as before
refuse() { # WANT OUT SHARD...
    want=$1
    shift
    out=$1
    [ -e "$out" ] && cp "$out" "$T/before.db"
    "$M" db merge "$@" 2>"$T/err" >/dev/null; rc=$?
    [ $rc -eq 2 ] || no "merge $*: exit $rc, want 2"
    has "magpie: error: $want" "$T/err"
    [ "$(wc -l <"$T/err")" -eq 1 ] || no "merge $*: more than one line: $(cat "$T/err")"
    if [ -e "$T/before.db" ]; then same "$T/before.db" "$out" "refused merge into $out changed it"; rm -f "$T/before.db"
    else [ -e "$out" ] && no "refused merge created $out"; fi
    [ -e "$out.merge-tmp" ] && no "refused merge left $out.merge-tmp"
}
fp1=$(sqlite3 "$T/a.db" "SELECT fingerprint FROM slides WHERE name = 'synth_001'")
"$M" tile "$T/dup.db" "$s1" -q
refuse "$T/dup.db: slide $s1 (fingerprint $fp1) is also in $T/a.db as $s1; a slide may be in only one of the merged datasets" \
    "$T/x.db" "$T/a.db" "$T/dup.db"
fp4=$(sqlite3 "$T/c.db" "SELECT fingerprint FROM slides WHERE name = 'synth_004'")
refuse "$T/c.db: slide $s4 (fingerprint $fp4) is also in $T/m.db as $s4; a slide may be in only one of the merged datasets" \
    "$T/m.db" "$T/c.db"
# the same path, other content
cp "$s4" "$T/s/moved.tiff"
"$M" tile "$T/p1.db" "$T/s/moved.tiff" -q
cp "$s5" "$T/s/moved.tiff"
"$M" tile "$T/p2.db" "$T/s/moved.tiff" -q
fpa=$(sqlite3 "$T/p1.db" "SELECT fingerprint FROM slides") fpb=$(sqlite3 "$T/p2.db" "SELECT fingerprint FROM slides")
refuse "$T/p2.db: slide $T/s/moved.tiff is also in $T/p1.db with other content (fingerprints $fpb and $fpa); a slide may be in only one of the merged datasets" \
    "$T/x.db" "$T/p1.db" "$T/p2.db"
# tiling parameters
"$M" tile "$T/size.db" "$s5" --size 112 -q
refuse "$T/size.db: tiled with size=112 but $T/a.db with size=224 (slides synth_005 and synth_000); merge only datasets tiled with the same parameters" \
    "$T/x.db" "$T/a.db" "$T/size.db"
"$M" tile "$T/mags.db" "$s5" --mags 10 -q
refuse "$T/mags.db: tiled with mags=[10] but $T/m.db with mags=[10,1.25] (slides synth_005 and synth_000); merge only datasets tiled with the same parameters" \
    "$T/m.db" "$T/mags.db"
"$M" tile "$T/png.db" "$s5" --format png -q
refuse "$T/png.db: tiled with format=\"png\" but $T/a.db with format=\"jpeg\" (slides synth_005 and synth_000); merge only datasets tiled with the same parameters" \
    "$T/x.db" "$T/a.db" "$T/png.db"
# an unfinished slide
cp "$T/mt.db" "$T/unf.db"
sqlite3 "$T/unf.db" "UPDATE slides SET status = 'tiling'"
refuse "$T/unf.db: slide $s5 is 'tiling': the run that wrote it did not finish; rerun it to the end, then merge" \
    "$T/x.db" "$T/a.db" "$T/unf.db"
# a table merge does not know
cp "$T/mt.db" "$T/tab.db"
sqlite3 "$T/tab.db" "CREATE TABLE notes(x); INSERT INTO notes VALUES (1), (2)"
refuse "$T/tab.db: table 'notes' holds 2 rows and this magpie does not know how to merge it" "$T/x.db" "$T/tab.db"
sqlite3 "$T/tab.db" "DELETE FROM notes"
"$M" db merge "$T/h.db" "$T/tab.db" -q || no "an unknown but empty table was refused"
# arguments
refuse "$T/m.db: is the merge target $T/m.db itself" "$T/m.db" "$T/m.db"
ln -s "$T/a.db" "$T/alias.db"
refuse "$T/alias.db: given twice (also as $T/a.db)" "$T/x.db" "$T/a.db" "$T/alias.db"
refuse "$T/none.db: no such dataset" "$T/x.db" "$T/none.db"
refuse "$T/s/slides.csv: not a SQLite database (or corrupt): file is not a database" "$T/x.db" "$T/s/slides.csv"
refuse "$T/s: not a regular file" "$T/x.db" "$T/s"
# a shard whose tiler still runs (its tile lock held)
flock "$T/c.db.tile-lock" sleep 60 &
holder=$!
i=0
while [ $i -lt 100 ] && flock -n "$T/c.db.tile-lock" true 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
refuse "$T/c.db: a magpie tile or run is writing to it now; merge when it has finished" "$T/x.db" "$T/c.db"
kill $holder 2>/dev/null
wait $holder 2>/dev/null
holder=""
# usage
"$M" db merge "$T/x.db" >/dev/null 2>&1; [ $? -eq 1 ] || no "merge without shards: want exit 1"
"$M" db merge >/dev/null 2>&1; [ $? -eq 1 ] || no "merge without arguments: want exit 1"
"$M" db merge --help | grep -q "^usage: magpie db merge OUT SHARD" || no "merge --help"
echo "db merge: 3 shards and 3 ways equal one dataset; $(grep -c '^refuse "' "$0") refusals"
exit $fail
