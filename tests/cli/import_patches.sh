#!/bin/sh
# `magpie db DB import-patches`: generated class folders of PNGs come in as slides with one
# patch each, the 10x images equal a 2x2 box average of the files (checked against `vips
# shrink`, to within rounding), re-importing changes nothing, the result splits and trains; bad
# files (corrupt, another size, not square, outside a class folder) are one-line errors naming
# the file with nothing written, a kill before the commit leaves the dataset as it was; the real
# Kather 2016 and NCT-CRC-HE-100K samples import (skipped with a reason when absent).
set -u
T=$(mktemp -d /tmp/mp_import_XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
ok() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }
M="$MAGPIE_BIN"
# random-pixel 64x64 RGB files in two class folders (PPM written by Python, converted by vips)
mkimg() { # path side seed
    python3 -c "import random,sys; r=random.Random(int(sys.argv[2])); n=int(sys.argv[1]);
sys.stdout.buffer.write(b'P6 %d %d 255\n' % (n, n) + bytes(r.randrange(256) for _ in range(n*n*3)))" "$2" "$3" > "$T/tmp.ppm" &&
    vips copy "$T/tmp.ppm" "$1"
}
P="$T/set"
mkdir -p "$P/Tumor" "$P/Normal" "$P/Normal/sub" "$P/.hidden"
for i in 1 2 3 4; do mkimg "$P/Tumor/t$i.png" 64 $i; mkimg "$P/Normal/n$i.png" 64 $((10 + i)); done
mkimg "$P/Normal/sub/deep.png" 64 99
mkimg "$P/.hidden/x.png" 32 5
echo "notes" > "$P/README.txt"
DB="$T/d.db"
"$M" db "$DB" import-patches "$P" --mpp 0.5 --png -q > "$T/o" 2> "$T/e"; rc=$?
ok "import rc" '[ $rc -eq 0 ] && [ ! -s "$T/e" ]'
ok "slides" '[ "$(sqlite3 "$DB" "SELECT count(*), count(DISTINCT label), min(mpp_source), min(vendor), min(status) FROM slides")" = "9|2|--mpp|patch-import|done" ]'
ok "images per mag" '[ "$(sqlite3 "$DB" "SELECT group_concat(mag || \":\" || n || \":\" || w, \" \") FROM (SELECT mag, count(*) n, max(width) w FROM images GROUP BY mag ORDER BY mag DESC)")" = "10.0:9:32 1.25:9:4" ]'
ok "labels from folders" '[ "$(sqlite3 "$DB" "SELECT label FROM slides WHERE name = '"'"'deep'"'"'")" = Normal ]'
ok "classes" '[ "$(sqlite3 "$DB" "SELECT group_concat(name) FROM (SELECT name FROM classes ORDER BY id)")" = "Normal,Tumor" ]'
# the 10x image is the file averaged over 2x2 blocks: compare with vips' own box shrink
"$M" db "$DB" export --format imagefolder --out "$T/ex" --mag 10 -q
vips shrink "$P/Tumor/t3.png" "$T/ref.v" 2 2
vips subtract "$T/ex/unsplit/Tumor/t3_$(sqlite3 "$DB" "SELECT p.id FROM patches p JOIN slides s ON s.id = p.slide_id WHERE s.name = 't3'")_0_0.png" "$T/ref.v" "$T/d.v"
vips abs "$T/d.v" "$T/a.v"
# (random pixels: nearest-neighbour or any other sampling would differ by tens of levels)
ok "10x is the area average (within rounding)" '[ "$(vips max "$T/a.v" | cut -d. -f1)" -le 1 ]'
# again: nothing changes
sum0=$(sqlite3 "$DB" "SELECT group_concat(id || path || fingerprint) FROM slides")
"$M" db "$DB" import-patches "$P" --mpp 0.5 --png 2> "$T/e"; rc=$?
ok "re-import keeps" '[ $rc -eq 0 ] && grep -q ": 9 image files: 0 imported, 9 already in $DB; 1 other files skipped; 64x64 px at 0.5 um/px; 2 classes in the dataset" "$T/e"'
ok "re-import rows unchanged" '[ "$(sqlite3 "$DB" "SELECT group_concat(id || path || fingerprint) FROM slides")" = "$sum0" ]'
# it splits and trains (1 epoch)
"$M" db "$DB" split --by patient --ratios 0.6,0.2,0.2 --seed 1 > /dev/null 2>&1
"$M" train "$DB" --method supervised --mag 10 --out "$T/m.mpk" --epochs 1 -q 2> "$T/e"; rc=$?
ok "trains" '[ $rc -eq 0 ] && [ -s "$T/m.mpk" ]'

# bad inputs: one line naming the file, exit 2, nothing written (the dataset as before)
before=$(sqlite3 "$DB" "SELECT count(*) FROM slides; SELECT count(*) FROM images; SELECT count(*) FROM classes")
bad() { # name setup... ; runs import of $T/bad
    rm -rf "$T/bad"; mkdir -p "$T/bad/A" "$T/bad/B"
    mkimg "$T/bad/A/a1.png" 64 1; mkimg "$T/bad/A/a2.png" 64 2
}
bad; printf 'PNG but not really' > "$T/bad/B/b.png"
"$M" db "$DB" import-patches "$T/bad" --mpp 0.5 -q 2> "$T/e"; rc=$?
ok "corrupt file" '[ $rc -eq 2 ] && [ $(wc -l < "$T/e") -eq 1 ] && grep -q "^magpie: error: $T/bad/B/b.png: not an image libvips can read" "$T/e"'
bad; mkimg "$T/bad/B/b.png" 48 3
"$M" db "$DB" import-patches "$T/bad" --mpp 0.5 -q 2> "$T/e"; rc=$?
ok "size mix" '[ $rc -eq 2 ] && [ "$(cat "$T/e")" = "magpie: error: $T/bad/B/b.png: 48x48, but $T/bad/A/a1.png is 64x64: one patch size per import (import each size on its own, with its --mpp)" ]'
bad; vips crop "$T/bad/A/a1.png" "$T/bad/B/b.png" 0 0 64 40
"$M" db "$DB" import-patches "$T/bad" --mpp 0.5 -q 2> "$T/e"; rc=$?
ok "not square" '[ $rc -eq 2 ] && [ "$(cat "$T/e")" = "magpie: error: $T/bad/B/b.png: 64x40 is not square (a patch covers a square)" ]'
bad; mkimg "$T/bad/top.png" 64 4
"$M" db "$DB" import-patches "$T/bad" --mpp 0.5 -q 2> "$T/e"; rc=$?
ok "outside a class folder" '[ $rc -eq 2 ] && [ "$(cat "$T/e")" = "magpie: error: $T/bad/top.png: not inside a class folder (--label-from folder takes the class from DIR/CLASS/FILE)" ]'
bad
"$M" db "$DB" import-patches "$T/bad" --mpp 0.5 --patient-from 'regex:^z(.*)' -q 2> "$T/e"; rc=$?
ok "patient regex no match" '[ $rc -eq 2 ] && [ "$(cat "$T/e")" = "magpie: error: $T/bad/A/a1.png: --patient-from regex does not match the file name '"'"'a1.png'"'"'" ]'
ok "nothing written" '[ "$(sqlite3 "$DB" "SELECT count(*) FROM slides; SELECT count(*) FROM images; SELECT count(*) FROM classes")" = "$before" ]'
# a kill inside the transaction, after 2 of 3 files: the dataset is as before
bad; mkimg "$T/bad/B/b.png" 64 7
MAGPIE_IMPORT_KILL=2 "$M" db "$DB" import-patches "$T/bad" --mpp 0.5 -q 2> /dev/null; rc=$?
ok "killed" '[ $rc -eq 137 ]'
ok "kill: as before" '[ "$(sqlite3 "$DB" "SELECT count(*) FROM slides; SELECT count(*) FROM images; SELECT count(*) FROM classes")" = "$before" ]'
"$M" db "$DB" import-patches "$T/bad" --mpp 0.5 -q; rc=$?
ok "after the kill: imports" '[ $rc -eq 0 ] && [ "$(sqlite3 "$DB" "SELECT count(*) FROM slides")" -eq 12 ] && "$M" db "$DB" check > /dev/null'

# usage errors: exit 1 before any work
u() { "$M" db "$T/u.db" import-patches "$@" 2> "$T/e"; echo $?; }
ok "no mpp" '[ $(u "$P") -eq 1 ] && tail -1 "$T/e" | grep -qx "magpie: error: db import-patches: DIR and --mpp are required (see magpie db DB import-patches --help)"'
ok "upsampling refused" '[ $(u "$P" --mpp 0.5 --mags 40) -eq 1 ] && [ "$(cat "$T/e")" = "magpie: error: db import-patches: --mags: 40x is finer than the images (20x at 0.5 um/px); import-patches does not upsample" ]'
ok "bad mpp" '[ $(u "$P" --mpp 0) -eq 1 ] && [ "$(cat "$T/e")" = "magpie: error: db import-patches: bad value for --mpp: '"'"'0'"'"' (um per pixel, 0.05 to 20) (see magpie db DB import-patches --help)" ]'
ok "bad regex" '[ $(u "$P" --mpp 0.5 --patient-from "regex:(") -eq 1 ] && grep -q "^magpie: error: db import-patches: --patient-from: bad regular expression .(.: " "$T/e"'
ok "unknown option" '[ $(u "$P" --mpp 0.5 --label folder) -eq 1 ] && [ "$(cat "$T/e")" = "magpie: error: db import-patches: unknown option '"'"'--label'"'"' (did you mean '"'"'--label-from'"'"'?) (see magpie db DB import-patches --help)" ]'
ok "missing DIR" '[ $(u "$T/nope" --mpp 0.5) -eq 2 ] && [ "$(cat "$T/e")" = "magpie: error: $T/nope: No such file or directory" ]'
ok "no dataset made" '[ ! -e "$T/u.db" ]'
ok "help" '"$M" db "$T/u.db" import-patches --help | head -1 | grep -q "^usage: magpie db DB import-patches DIR"'

# the real samples
D="$MAGPIE_SHARED_DATA/patches"
if [ -d "$D/kather2016" ] && [ -d "$D/nct-crc-he-100k" ]; then
    "$M" db "$T/k.db" import-patches "$D/kather2016" --mpp 0.495 --patient-from 'regex:(CRC-Prim-HE-[0-9]+)' -q; rc=$?
    ok "kather2016" '[ $rc -eq 0 ] && [ "$(sqlite3 "$T/k.db" "SELECT count(*), count(DISTINCT label), count(DISTINCT patient) FROM slides")" = "24|8|10" ]'
    ok "kather2016 sizes" '[ "$(sqlite3 "$T/k.db" "SELECT group_concat(DISTINCT width) FROM images WHERE mag = 10")" = 74 ] && "$M" db "$T/k.db" check > /dev/null'
    "$M" db "$T/n.db" import-patches "$D/nct-crc-he-100k" --mpp 0.5 --mags 20,10,1.25 -q; rc=$?
    ok "nct-crc-he-100k" '[ $rc -eq 0 ] && [ "$(sqlite3 "$T/n.db" "SELECT count(*), count(DISTINCT label) FROM slides")" = "9|9" ]'
    ok "nct sizes" '[ "$(sqlite3 "$T/n.db" "SELECT group_concat(w, \",\") FROM (SELECT DISTINCT width w FROM images ORDER BY mag DESC)")" = "224,112,14" ]'
else
    echo "SKIP (part): real patch samples absent ($D)"
fi
exit $fail
