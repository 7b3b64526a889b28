#!/bin/sh
# Curation on tiled synthetic slides (issue 12): labels kept apart from patches survive
# re-tiling (other --mags, another grid) exactly as a fresh import would give; labels
# list/remove; slides matched by path or unique name (CSV too); slides remove; vacuum;
# splits that refuse to leave a split empty, counts, folds, the leakage check.
set -u
T=$(mktemp -d /tmp/mp_curlab_XXXXXX)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$T"' EXIT
fail=0
ok() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }
M="$MAGPIE_BIN"
q() { sqlite3 "$DB" "$1"; }
DB="$T/d.db"
"$M" synth "$T/s" --slides 3 --patients 3 --width 4096 --height 3072 --mpp 0.25 --seed 1 -q || { echo "FAIL: synth"; exit 1; }
"$M" tile "$DB" "$T"/s/*.tiff --mags 10,1.25 --size 112 --jobs 2 -q 2>/dev/null
"$M" db "$DB" labels import "$T/s/slides.csv" "$T"/s/*.geojson -q
labels() { q "SELECT s.name, p.gx, p.gy, l.class_id, l.coverage FROM patch_labels l JOIN patches p ON p.id = l.patch_id JOIN slides s ON s.id = p.slide_id ORDER BY 1, 2, 3"; }
labels > "$T/l0"
n0=$(wc -l < "$T/l0")
ok "labels imported" '[ "$n0" -gt 5 ]'

# 1. re-tile with other --mags: same grid, so exactly the same patch labels (before: all lost)
"$M" tile "$DB" "$T"/s/*.tiff --mags 10,5 --size 112 --dry-run > "$T/dry" 2>&1
ok "dry run says labels are re-applied" 'grep -q "parameters changed: would redo; its [0-9]* region annotations* will be re-applied to the new patches" "$T/dry"'
"$M" tile "$DB" "$T"/s/*.tiff --mags 10,5 --size 112 --jobs 2 -q 2>/dev/null
labels > "$T/l1"
ok "re-tile with other --mags keeps every patch label" 'cmp -s "$T/l0" "$T/l1"'
ok "images now at 10x and 5x" '[ "$(q "SELECT group_concat(DISTINCT mag) FROM (SELECT mag FROM images ORDER BY mag)")" = "5.0,10.0" ]'
# another grid (the issue's 670 -> 509: the patches change): the labels equal a fresh import's
"$M" tile "$DB" "$T"/s/*.tiff --mags 10 --size 224 --stride 112 --jobs 2 -q 2>/dev/null
labels > "$T/l2"
DB2="$T/fresh.db"
"$M" tile "$DB2" "$T"/s/*.tiff --mags 10 --size 224 --stride 112 --jobs 2 -q 2>/dev/null
"$M" db "$DB2" labels import "$T/s/slides.csv" "$T"/s/*.geojson -q
DB="$DB2" labels > "$T/l2fresh"
ok "re-tile on another grid equals a fresh import" '[ -s "$T/l2" ] && cmp -s "$T/l2" "$T/l2fresh"'
ok "slide labels kept" '[ "$(q "SELECT count(*) FROM slides WHERE label IS NOT NULL")" = 3 ]'

# 2. labels list / remove
"$M" db "$DB" labels list --regions > "$T/list"; rc=$?
ok "labels list" '[ $rc -eq 0 ] && grep -q "csv .*slides.csv" "$T/list" && grep -q "geojson  synth_000 (1)" "$T/list" && grep -q "Polygon" "$T/list"'
pl() { q "SELECT count(*) FROM patch_labels l JOIN patches p ON p.id = l.patch_id WHERE p.slide_id = $1"; }
s2=$(pl 2)
a1=$(q "SELECT min(id) FROM region_annotations WHERE slide_id = 2")
"$M" db "$DB" labels remove --annotation "$a1" 2> "$T/err"; rc=$?
ok "remove one annotation" '[ $rc -eq 0 ] && grep -q "removed 1 region annotation, 0 slide labels, 0 imports; patch labels of the slides concerned: $s2 -> " "$T/err" && [ "$(q "SELECT count(*) FROM region_annotations WHERE id = $a1")" = 0 ] && [ "$(q "SELECT count(*) FROM region_annotations WHERE slide_id = 2")" = 2 ]'
"$M" db "$DB" labels remove --source "$T/s/synth_001.geojson" -q 2> "$T/err"; rc=$?
ok "remove by source file" '[ $rc -eq 0 ] && [ "$(q "SELECT count(*) FROM region_annotations WHERE slide_id = 2")" = 0 ] && [ "$(pl 2)" = 0 ]'
"$M" db "$DB" labels remove --source "$T/s/synth_001.geojson" 2> "$T/err"; rc=$?
ok "remove by source twice" '[ $rc -eq 2 ] && [ "$(cat "$T/err")" = "magpie: error: $DB: no labels imported from file $T/s/synth_001.geojson (see magpie db DB labels list)" ]'
"$M" db "$DB" labels import "$T/s/synth_001.geojson" -q
ok "re-import restores" '[ "$(pl 2)" = "$s2" ]'
"$M" db "$DB" labels import "$T/s/synth_001.geojson" -q
ok "importing a file again replaces it" '[ "$(q "SELECT count(*) FROM label_imports WHERE slide_id = 2")" = 1 ] && [ "$(pl 2)" = "$s2" ]'
"$M" db "$DB" labels remove --slide synth_000 -q; rc=$?
ok "remove by slide" '[ $rc -eq 0 ] && [ "$(q "SELECT count(*) FROM slides WHERE id = 1 AND label IS NULL AND patient IS NOT NULL")" = 1 ] && [ "$(q "SELECT count(*) FROM region_annotations WHERE slide_id = 1")" = 0 ]'
"$M" db "$DB" labels remove --annotation 99999 2> "$T/err"; rc=$?
ok "remove unknown annotation" '[ $rc -eq 2 ] && [ "$(cat "$T/err")" = "magpie: error: $DB: no region annotation 99999 (see magpie db DB labels list)" ]'
"$M" db "$DB" labels remove --slide synth_001 --import 1 2> "$T/err"; rc=$?
ok "remove: two selectors is a usage error" '[ $rc -eq 1 ]'

# 3. two slides with one name (a/X, b/X): a CSV row by name is refused listing both; by path it applies to one
mkdir -p "$T/b"
cp "$T/s/synth_001.tiff" "$T/b/synth_001.tiff"
"$M" tile "$DB" "$T/b/synth_001.tiff" --mags 10 --size 224 --stride 112 -q 2>/dev/null
id2=$(q "SELECT id FROM slides WHERE path = '$T/b/synth_001.tiff'")
printf 'slide,label\nsynth_001,Tumor\n' > "$T/amb.csv"
"$M" db "$DB" labels import "$T/amb.csv" 2> "$T/err"; rc=$?
ok "CSV: ambiguous name refused" '[ $rc -eq 2 ] && [ "$(cat "$T/err")" = "magpie: error: $T/amb.csv:2: '"'"'synth_001'"'"' names 2 slides: slide 2 ($T/s/synth_001.tiff), slide $id2 ($T/b/synth_001.tiff); give the slide'"'"'s path" ]'
ok "CSV: nothing applied" '[ "$(q "SELECT count(*) FROM slides WHERE label = '"'"'Tumor'"'"' AND name = '"'"'synth_001'"'"'")" = 0 ]'
printf 'slide,label\n%s,Tumor\n' "$T/b/synth_001.tiff" > "$T/path.csv"
"$M" db "$DB" labels import "$T/path.csv" -q; rc=$?
ok "CSV: by path applies to that slide only" '[ $rc -eq 0 ] && [ "$(q "SELECT group_concat(id) FROM slides WHERE label = '"'"'Tumor'"'"' AND name = '"'"'synth_001'"'"'")" = "$id2" ]'
"$M" db "$DB" labels import "$T/s/synth_001.geojson" 2> "$T/err"; rc=$?
ok "GeoJSON: ambiguous slide refused" '[ $rc -eq 2 ] && grep -q "synth_001.geojson: .*names 2 slides" "$T/err"'

# 4. slides remove: ambiguous refused (nothing removed), by path removes everything of it
"$M" db "$DB" slides remove synth_001 2> "$T/err"; rc=$?
ok "slides remove: ambiguous" '[ $rc -eq 2 ] && grep -q "names 2 slides" "$T/err" && [ "$(q "SELECT count(*) FROM slides")" = 4 ]'
"$M" db "$DB" slides remove "$T/b/synth_001.tiff" nosuch 2> "$T/err"; rc=$?
ok "slides remove: one unknown, none removed" '[ $rc -eq 2 ] && grep -q "no slide .nosuch. (by path, id or name); nothing removed" "$T/err" && [ "$(q "SELECT count(*) FROM slides")" = 4 ]'
"$M" db "$DB" split --ratios 0.5,0.5,0 --stratify none -q > /dev/null
"$M" db "$DB" slides remove "$T/b/synth_001.tiff" 2> "$T/err"; rc=$?
ok "slides remove by path" '[ $rc -eq 0 ] && grep -q "removed 1 slide and [0-9]* patches" "$T/err" && [ "$(q "SELECT count(*) FROM slides WHERE id = $id2")" = 0 ]'
ok "slides remove leaves no orphan" '[ "$(q "SELECT (SELECT count(*) FROM patches WHERE slide_id = $id2) + (SELECT count(*) FROM splits WHERE slide_id = $id2) + (SELECT count(*) FROM slide_labels WHERE slide_id = $id2) + (SELECT count(*) FROM images WHERE patch_id NOT IN (SELECT id FROM patches))")" = 0 ]'
"$M" db "$DB" check --no-decode > /dev/null; rc=$?
ok "check after remove" '[ $rc -eq 0 ]'
before=$(stat -c %s "$DB")
"$M" db "$DB" vacuum -q; rc=$?
ok "vacuum" '[ $rc -eq 0 ] && [ "$(stat -c %s "$DB")" -le "$before" ] && "$M" db "$DB" check > /dev/null'

# train names the missing step: no labels -> labels import; labels, no split -> split
N="$T/nolab.db"
"$M" tile "$N" "$T/s/synth_000.tiff" --mags 10 -q 2>/dev/null
"$M" train "$N" --method supervised --mag 10 --out "$T/n.mpk" 2> "$T/err"; rc=$?
ok "train without labels" '[ $rc -eq 2 ] && [ "$(cat "$T/err")" = "magpie: error: $N: no labels (run \`magpie db DB labels import FILE\` first: a CSV of slide labels or GeoJSON region annotations)" ]'
"$M" db "$N" labels import "$T/s/slides.csv" -q 2>/dev/null
"$M" train "$N" --method supervised --mag 10 --out "$T/n.mpk" 2> "$T/err"; rc=$?
ok "train without split" '[ $rc -eq 2 ] && [ "$(cat "$T/err")" = "magpie: error: $N: no split yet (run \`magpie db DB split\` first)" ]'

# 5. splits (the README's case: 8 slides of 4 patients, labels 2 Tumor, 1 Stroma, 1 Lymphocyte)
S="$T/split.db"
{ cat "$MAGPIE_SRC/db/schema.sql"; echo "PRAGMA user_version = 3;"
  for i in 0 1 2 3 4 5 6 7; do p=$((i % 4)); case $p in 0|3) l=Tumor;; 1) l=Stroma;; 2) l=Lymphocyte;; esac
    echo "INSERT INTO slides(id, path, name, patient, label, fingerprint, status) VALUES ($((i+1)), '/x/s$i.tiff', 's$i', 'p$p', '$l', 'f$i', 'done');"; done; } | sqlite3 "$S"
"$M" db "$S" split --by patient --ratios 0.6,0.2,0.2 --stratify label --seed 1 > /dev/null 2> "$T/err"; rc=$?
ok "README split refused" '[ $rc -eq 2 ] && [ "$(cat "$T/err")" = "magpie: error: $S: cannot fill train, val and test with every class: patients per class (labelled): Tumor 2, Stroma 1, Lymphocyte 1; each class needs at least 3. Label more patients, ask for fewer splits, or --stratify none" ]'
ok "refused split wrote nothing" '[ "$(sqlite3 "$S" "SELECT count(*) FROM splits")" = 0 ]'
"$M" db "$S" split --ratios 0.6,0.2,0.2 --stratify none --seed 1 > "$T/out"; rc=$?
ok "unstratified fills every split" '[ $rc -eq 0 ] && [ "$(sqlite3 "$S" "SELECT count(DISTINCT split) FROM splits")" = 3 ]'
"$M" db "$S" split --ratios 0.5,0.5,0 --stratify none > /dev/null; rc=$?
ok "no test asked, none made" '[ $rc -eq 0 ] && [ "$(sqlite3 "$S" "SELECT count(*) FROM splits WHERE split = '"'"'test'"'"'")" = 0 ]'
"$M" db "$S" split --ratios 1,1,0 --stratify label 2> "$T/err"; rc=$?
ok "counts per class: too few" '[ $rc -eq 2 ] && grep -q "each class needs at least 2" "$T/err"'
"$M" db "$S" split --ratios 0.5,0.3,0.1 2> "$T/err"; rc=$?
ok "fractions not summing to 1" '[ $rc -eq 1 ] && grep -q "fractions must sum to 1" "$T/err"'
"$M" db "$S" split --ratios 2,1,1 --stratify none > /dev/null; rc=$?
ok "counts unstratified: 2 train 1 val 1 test" '[ $rc -eq 0 ] && [ "$(sqlite3 "$S" "SELECT group_concat(n) FROM (SELECT count(DISTINCT s.patient) n FROM splits t JOIN slides s ON s.id = t.slide_id GROUP BY split ORDER BY split)")" = "1,2,1" ]'
"$M" db "$S" split --folds 2 --stratify none --fold 1 > /dev/null; rc=$?
ok "folds" '[ $rc -eq 0 ] && [ "$(sqlite3 "$S" "SELECT count(DISTINCT fold) || count(*) FROM folds")" = "28" ] && [ "$(sqlite3 "$S" "SELECT count(*) FROM (SELECT patient FROM slides s JOIN folds f ON f.slide_id = s.id GROUP BY patient HAVING count(DISTINCT fold) > 1)")" = 0 ]'
ok "fold 1 is val" '[ "$(sqlite3 "$S" "SELECT count(*) FROM folds f JOIN splits t ON t.slide_id = f.slide_id WHERE (f.fold = 1) != (t.split = '"'"'val'"'"')")" = 0 ]'
"$M" db "$S" splits > "$T/sp"; rc=$?
ok "splits table and check" '[ $rc -eq 0 ] && grep -q "ok: no patient in two splits, folds disjoint" "$T/sp" && grep -q "^train  *4  *2" "$T/sp"'
"$M" db "$S" split --folds 3 2> "$T/err"; rc=$?
ok "folds: too few patients per class" '[ $rc -eq 2 ] && grep -q "cannot fill 3 folds with every class: patients per class (labelled): Tumor 2, Stroma 1, Lymphocyte 1" "$T/err"'
"$M" db "$S" split --folds 2 --ratios 0.5,0.5,0 2> "$T/err"; rc=$?
ok "folds and ratios exclude" '[ $rc -eq 1 ]'
# a leak put in by hand: splits and check both report it (exit 2)
sqlite3 "$S" "UPDATE splits SET split = 'test' WHERE slide_id = (SELECT min(slide_id) FROM splits WHERE split = 'train'); UPDATE folds SET fold = 1 - fold WHERE slide_id = 1"
"$M" db "$S" splits > "$T/sp" 2> "$T/err"; rc=$?
ok "splits reports leaks" '[ $rc -eq 2 ] && grep -q "LEAK: patient p[0-9] is in two splits (test and train)" "$T/sp" && grep -q "LEAK: patient p0 is in two folds (0 and 1)" "$T/sp"'
"$M" db "$S" check --no-decode > "$T/ck" 2>&1; rc=$?
ok "check reports leaks" '[ $rc -eq 2 ] && grep -q "split leak: patient p[0-9] is in two splits" "$T/ck"'
exit $fail
