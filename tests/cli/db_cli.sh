#!/bin/sh
# `magpie db` on a small hand-made dataset: info/slides/stats/check/mask print what the rows
# say, check catches a truncated blob (exit 2), and bad paths give one-line errors.
set -u
T=$(mktemp -d /tmp/mp_dbcli_XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
ok() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }

vips black "$T/b16.v" 16 16 --bands 3 && vips jpegsave "$T/b16.v" "$T/p16.jpg" --Q 90
vips black "$T/b2.v" 2 2 --bands 3 && vips jpegsave "$T/b2.v" "$T/p2.jpg" --Q 90
vips black "$T/m.v" 8 6 && vips pngsave "$T/m.v" "$T/mask.png"
DB="$T/d.db"
{ cat "$MAGPIE_SRC/db/schema.sql"; cat <<SQL
PRAGMA user_version = 1;
INSERT INTO slides(id, path, name, fingerprint, vendor, width, height, mpp_x, mpp_y, mpp_source, status, n_patches, mask, mask_width, mask_height, mask_downsample)
  VALUES (1, '/x/alpha.svs', 'alpha', 'f1', 'aperio', 1000, 800, 0.25, 0.25, 'openslide.mpp', 'done', 2, readfile('$T/mask.png'), 8, 6, 125);
INSERT INTO slides(id, path, name, fingerprint, status, error) VALUES (2, '/x/bad.svs', 'bad', 'f2', 'failed', 'bad.svs: not a slide');
INSERT INTO patches VALUES (1, 1, 0, 0, 0, 0, 64, 0.9, 12.5, 0, 200), (2, 1, 1, 0, 64, 0, 64, 0.7, 30, 0.1, 180);
INSERT INTO images VALUES (1, 10, 16, 16, 2, 0.5, 'jpeg', readfile('$T/p16.jpg')), (1, 1.25, 2, 2, 3, 0.25, 'jpeg', readfile('$T/p2.jpg')),
                          (2, 10, 16, 16, 2, 0.5, 'jpeg', readfile('$T/p16.jpg')), (2, 1.25, 2, 2, 3, 0.25, 'jpeg', readfile('$T/p2.jpg'));
SQL
} | sqlite3 "$DB" || { echo "FAIL: cannot build the test dataset"; exit 1; }

M="$MAGPIE_BIN"
ok "info counts" '"$M" db "$DB" info > "$T/info" && grep -q "slides    2 total: 1 done, 1 failed" "$T/info" && grep -q "patches   2 " "$T/info"'
ok "info mags" 'grep -q "10x         2 images    16x16" "$T/info" && grep -q "1.25x         2 images     2x2" "$T/info"'
ok "slides table" '"$M" db "$DB" slides > "$T/slides" && grep -q "alpha .* done .*aperio .*1000x800 *0.2500 openslide.mpp .* 2  10x:2 1.25x:2" "$T/slides"'
ok "slides error" 'grep -q "bad .*failed .*bad.svs: not a slide" "$T/slides"'
ok "slides json" '"$M" db "$DB" slides --json | head -1 | grep -q "\"name\":\"alpha\",\"status\":\"done\""'
ok "stats" '"$M" db "$DB" stats > "$T/stats" && grep -q "tissue .*0.700 .*0.900" "$T/stats"'
# per-class counts: patch 1 carries a region label, patch 2 inherits the slide's label
sqlite3 "$DB" "INSERT INTO classes VALUES (0, 'Tumor'), (1, 'Stroma'); UPDATE slides SET label = 'Tumor' WHERE id = 1;
               INSERT INTO patch_labels VALUES (1, 1, 0.8, 'test')"
ok "stats per class" '"$M" db "$DB" stats > "$T/stats2" && grep -q "^  Stroma  *1$" "$T/stats2" && grep -q "^  Tumor  *1$" "$T/stats2"'
ok "check clean" '"$M" db "$DB" check > "$T/check" && grep -q "2 patches, 4 images, 4 blobs decoded: ok" "$T/check"'
ok "mask export" '"$M" db "$DB" mask alpha "$T/out.png" 2>/dev/null && cmp -s "$T/out.png" "$T/mask.png"'
"$M" db "$DB" mask bad "$T/out2.png" 2> "$T/err"; rc=$?
ok "mask of untiled slide" '[ $rc -eq 2 ] && grep -q "slide .bad. has no tissue mask" "$T/err"'

# naming a slide: an all-digit name that is also another slide's id, and a name two slides
# share, are refused with every candidate listed; the path always names one slide
sqlite3 "$DB" "INSERT INTO slides(id, path, name, fingerprint, status) VALUES (3, '/x/2.svs', '2', 'f3', 'failed'),
               (4, '/y/alpha.svs', 'alpha', 'f4', 'failed')"
"$M" db "$DB" mask 2 "$T/o3.png" 2> "$T/err"; rc=$?
ok "mask: id of one, name of another" '[ $rc -eq 2 ] && [ "$(cat "$T/err")" = "magpie: error: $DB: '"'"'2'"'"' names 2 slides: slide 2 by id, named '"'"'bad'"'"' (/x/bad.svs), slide 3 named '"'"'2'"'"' (/x/2.svs); name one by its path" ]'
"$M" db "$DB" mask alpha "$T/o4.png" 2> "$T/err"; rc=$?
ok "mask: duplicated name" '[ $rc -eq 2 ] && [ "$(cat "$T/err")" = "magpie: error: $DB: '"'"'alpha'"'"' names 2 slides: slide 1 named '"'"'alpha'"'"' (/x/alpha.svs), slide 4 named '"'"'alpha'"'"' (/y/alpha.svs); name one by its path" ]'
[ -e "$T/o3.png" ] || [ -e "$T/o4.png" ] && ok "ambiguous mask wrote nothing" false
ok "mask by path" '"$M" db "$DB" mask /x/alpha.svs "$T/o5.png" 2>/dev/null && cmp -s "$T/o5.png" "$T/mask.png"'
ok "mask by id" '"$M" db "$DB" mask 1 "$T/o6.png" 2>/dev/null && cmp -s "$T/o6.png" "$T/mask.png"'
"$M" db "$DB" mask 77 "$T/o7.png" 2> "$T/err"; rc=$?
ok "mask: no such slide" '[ $rc -eq 2 ] && grep -qx "magpie: error: $DB: no slide .77. (by path, id or name)" "$T/err"'
sqlite3 "$DB" "DELETE FROM slides WHERE id IN (3, 4)"
# db labels takes -q like every subcommand
printf 'slide,label\nalpha,Tumor\n' > "$T/l.csv"
"$M" db "$DB" labels import "$T/l.csv" -q > "$T/lout" 2>&1; rc=$?
ok "labels import -q" '[ $rc -eq 0 ] && [ ! -s "$T/lout" ]'
# unknown slides: a warning per row, then how many rows were applied and how many not (exit 3)
printf 'slide,label\nalpha,Tumor\nghost,Tumor\nghost,Normal\n' > "$T/l2.csv"
"$M" db "$DB" labels import "$T/l2.csv" -q > "$T/lout" 2> "$T/lerr"; rc=$?
ok "labels unknown slides exit 3" '[ $rc -eq 3 ] && [ $(wc -l < "$T/lerr") -eq 3 ]'
ok "labels unknown slide warning" 'grep -qxF "magpie: warning: $T/l2.csv: unknown slide '"'"'ghost'"'"' (not in $DB)" "$T/lerr"'
ok "labels summary" 'tail -1 "$T/lerr" | grep -qxF "magpie: warning: $T/l2.csv: 3 rows: 1 applied (1 slides updated), 2 not applied (unknown slide), 1 new classes"'

# damage: truncate one blob → check reports it and exits 2
head -c 100 "$T/p16.jpg" > "$T/trunc.jpg"
sqlite3 "$DB" "UPDATE images SET data = readfile('$T/trunc.jpg') WHERE patch_id = 2 AND mag = 10"
"$M" db "$DB" check > "$T/check2" 2> "$T/err2"; rc=$?
ok "check finds truncated blob" '[ $rc -eq 2 ] && grep -q "blob does not decode: patch 2 at 10x" "$T/check2" && grep -q "integrity check found 1 problem" "$T/err2"'

# bad inputs
"$M" db "$T/nope.db" info 2> "$T/err3"; rc=$?
ok "missing dataset" '[ $rc -eq 2 ] && [ "$(cat "$T/err3")" = "magpie: error: $T/nope.db: no such dataset" ]'
echo "hello" > "$T/text.db"
"$M" db "$T/text.db" info 2> "$T/err4"; rc=$?
ok "text file" '[ $rc -eq 2 ] && grep -q "text.db: not a" "$T/err4" && [ $(wc -l < "$T/err4") -eq 1 ]'
"$M" db "$DB" frob 2>/dev/null; rc=$?
ok "unknown db command" '[ $rc -eq 1 ]'
exit $fail
