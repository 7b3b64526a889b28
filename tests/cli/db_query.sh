#!/bin/sh
# `magpie db DB query`: table, --json, --count, --limit on a hand-made dataset; usage errors
# (bad expression, unknown split, unknown option) exit 1 with one line; injection attempts
# select nothing and leave the dataset as it was.
set -u
T=$(mktemp -d /tmp/mp_dbquery_XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
ok() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }
M="$MAGPIE_BIN"
DB="$T/d.db"
{ cat "$MAGPIE_SRC/db/schema.sql"; cat <<SQL
PRAGMA user_version = 2;
INSERT INTO slides(id, path, name, patient, fingerprint, status, label) VALUES
  (1, '/x/alpha.svs', 'alpha', 'P1', 'f1', 'done', 'Tumor'), (2, '/x/beta.svs', 'beta', 'P2', 'f2', 'done', 'Normal');
INSERT INTO patches VALUES (1, 1, 0, 0, 0, 0, 64, 0.9, 12.5, 0, 200), (2, 1, 1, 0, 64, 0, 64, 0.4, 30, 0.1, 180),
  (3, 2, 0, 0, 0, 0, 64, 0.7, 5, 0, 220);
INSERT INTO images VALUES (1, 10, 2, 2, 0, 1, 'png', x'00'), (2, 10, 2, 2, 0, 1, 'png', x'00'), (3, 1.25, 2, 2, 0, 1, 'png', x'00');
INSERT INTO classes VALUES (0, 'Tumor'), (1, 'Normal'), (2, 'Stroma');
INSERT INTO patch_labels VALUES (2, 2, 0.8, 'test');
INSERT INTO splits VALUES (1, 'train'), (2, 'val');
SQL
} | sqlite3 "$DB" || { echo "FAIL: cannot build the test dataset"; exit 1; }
sum0=$(sqlite3 "$DB" .dump | md5sum)

"$M" db "$DB" query "label = tumor and tissue > 0.5 and split in (train, val)" > "$T/o" 2> "$T/e"; rc=$?
ok "table rc" '[ $rc -eq 0 ] && [ ! -s "$T/e" ] && [ $(wc -l < "$T/o") -eq 2 ]'
ok "table header" 'head -1 "$T/o" | grep -q "^ *id  slide .* tissue .* label .* split .* mags$"'
ok "table row" 'tail -1 "$T/o" | grep -q "^ *1  alpha  *P1  *0  *0  *64.0  0.900  *12.5  0.000 200.000  Tumor  *train  *10$"'
ok "several words" '"$M" db "$DB" query label = stroma --count | grep -qx 1'
ok "count" '[ "$("$M" db "$DB" query --count "split = train")" = 2 ]'
ok "count all" '[ "$("$M" db "$DB" query --count)" = 3 ]'
ok "limit" '[ $("$M" db "$DB" query --limit 2 | wc -l) -eq 3 ]'
"$M" db "$DB" query --json "mag = 1.25" > "$T/j"; rc=$?
ok "json" '[ $rc -eq 0 ] && [ "$(cat "$T/j")" = "{\"id\":3,\"slide\":\"beta\",\"patient\":\"P2\",\"x0\":0,\"y0\":0,\"size0\":64.0,\"tissue\":0.7,\"blur\":5.0,\"pen\":0.0,\"brightness\":220.0,\"label\":\"Normal\",\"split\":\"val\",\"mags\":[1.25]}" ]'
ok "json parses" 'python3 -c "import json,sys; [json.loads(l) for l in open(sys.argv[1])]" "$T/j"'

err() { "$M" db "$DB" query "$@" > "$T/o" 2> "$T/e"; echo $?; }
ok "parse error exit 1" '[ $(err "tissue > x") -eq 1 ] && [ "$(cat "$T/e")" = "magpie: error: db query: column 10: tissue wants a number, got '"'"'x'"'"'" ] && [ ! -s "$T/o" ]'
ok "unknown field" '[ $(err "id = 1") -eq 1 ] && grep -qx "magpie: error: db query: column 1: unknown field .id. (fields: tissue, blur, pen, brightness, mag, label, split, slide, patient, prediction, confidence)" "$T/e"'
ok "unknown split" '[ $(err "split = testing") -eq 1 ] && [ "$(cat "$T/e")" = "magpie: error: db query: column 9: unknown split '"'"'testing'"'"' (known: train, val, test, unlabeled)" ]'
ok "semicolon" '[ $(err "label = tumor; DROP TABLE slides") -eq 1 ] && [ "$(cat "$T/e")" = "magpie: error: db query: column 14: unexpected character '"'"';'"'"'" ]'
ok "comment" '[ $(err "label = tumor -- x") -eq 1 ] && grep -qx "magpie: error: db query: column 15: expected .and., .or. or the end, found .--." "$T/e"'
ok "quoted injection selects nothing" '[ $(err --count "label = '"'"'x'"'"''"'"' OR 1=1 --'"'"'") -eq 0 ] && [ "$(cat "$T/o")" = 0 ]'
ok "unknown option" '[ $(err --jsn) -eq 1 ] && [ "$(cat "$T/e")" = "magpie: error: db query: unknown option '"'"'--jsn'"'"' (see magpie db DB query --help)" ]'
ok "json and count" '[ $(err --json --count) -eq 1 ] && grep -qx "magpie: error: db query: --json and --count exclude each other" "$T/e"'
ok "bad limit" '[ $(err --limit 0) -eq 1 ] && grep -qx "magpie: error: db query: --limit wants a positive whole number, got .0." "$T/e"'
ok "help" '"$M" db "$DB" query --help | head -1 | grep -q "^usage: magpie db DB query"'
ok "missing dataset" '[ $(cd "$T" && "$M" db nope.db query --count > o 2> e; echo $?) -eq 2 ] && grep -qx "magpie: error: nope.db: no such dataset" "$T/e"'
ok "dataset unchanged" '[ "$(sqlite3 "$DB" .dump | md5sum)" = "$sum0" ]'
exit $fail
