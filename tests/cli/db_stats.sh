#!/bin/sh
# `magpie db DB stats`: patches per class x split x magnification (region label, else the
# slide's), the tissue histogram and the MPP sources, on a hand-made dataset.
set -u
T=$(mktemp -d /tmp/mp_dbstats_XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
ok() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }
DB="$T/d.db"
{ cat "$MAGPIE_SRC/db/schema.sql"; cat <<SQL
PRAGMA user_version = 2;
INSERT INTO slides(id, path, name, patient, fingerprint, status, label, mpp_x, mpp_source) VALUES
  (1, '/x/a.svs', 'a', 'P1', 'f1', 'done', 'Tumor', 0.25, 'openslide.mpp'), (2, '/x/b.svs', 'b', 'P2', 'f2', 'done', 'Normal', 0.5, 'openslide.mpp'),
  (3, '/x/c.tif', 'c', 'P3', 'f3', 'done', NULL, 0.2527, '--mpp');
INSERT INTO patches VALUES (1, 1, 0, 0, 0, 0, 64, 0.95, 1, 0, 200), (2, 1, 1, 0, 64, 0, 64, 0.45, 1, 0, 180),
  (3, 2, 0, 0, 0, 0, 64, 0.7, 1, 0, 220), (4, 3, 0, 0, 0, 0, 64, 1.0, 1, 0, 220);
INSERT INTO images VALUES (1, 10, 2, 2, 0, 1, 'png', x'00'), (2, 10, 2, 2, 0, 1, 'png', x'00'), (3, 10, 2, 2, 0, 1, 'png', x'00'),
  (4, 10, 2, 2, 0, 1, 'png', x'00'), (1, 1.25, 2, 2, 0, 1, 'png', x'00'), (3, 1.25, 2, 2, 0, 1, 'png', x'00');
INSERT INTO classes VALUES (0, 'Tumor'), (1, 'Normal'), (2, 'Stroma');
INSERT INTO patch_labels VALUES (2, 2, 0.8, 'test');
INSERT INTO splits VALUES (1, 'train'), (2, 'val');
SQL
} | sqlite3 "$DB" || { echo "FAIL: cannot build the test dataset"; exit 1; }
"$MAGPIE_BIN" db "$DB" stats > "$T/s" 2> "$T/e"; rc=$?
ok "rc" '[ $rc -eq 0 ] && [ ! -s "$T/e" ]'
sed -n '/^patches per class x split/,/^tissue/p' "$T/s" > "$T/t"
cat > "$T/want" <<EOF2
patches per class x split x magnification:
  10x                    train       val      test unlabeled    (none)     total
  (unlabelled)               0         0         0         0         1         1
  Normal                     0         1         0         0         0         1
  Stroma                     1         0         0         0         0         1
  Tumor                      1         0         0         0         0         1
  1.25x                  train       val      test unlabeled    (none)     total
  Normal                     0         1         0         0         0         1
  Tumor                      1         0         0         0         0         1
tissue fraction histogram (patches per 0.1 bin, 0.0-0.1 ... 0.9-1.0):
EOF2
ok "class x split x mag" 'cmp -s "$T/t" "$T/want" || { diff "$T/want" "$T/t"; false; }'
ok "histogram" 'grep -A1 "^tissue fraction histogram" "$T/s" | tail -1 | grep -qx "  0 0 0 0 1 0 0 1 0 2"'
ok "mpp sources" 'grep -qx "  openslide.mpp          2 slides  0.2500..0.5000 um/px" "$T/s" && grep -qx "  --mpp                  1 slides  0.2527..0.2527 um/px" "$T/s"'
exit $fail
