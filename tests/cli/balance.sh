#!/bin/sh
# `magpie db DB balance` + `magpie train --sampling FILE`: on a 36:6 imbalanced train split the
# trainer's draws per class (its .log.jsonl drawn_per_class) are balanced with the list from
# `balance --by patch`, and stay imbalanced with a list of equal weights (the control: the log
# reports what was drawn); bad lists and options are one-line errors.
set -u
T=$(mktemp -d /tmp/mp_balance_XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
ok() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }
M="$MAGPIE_BIN"
# 36 Tumor and 6 Normal 32x32 patches (random pixels, a colour cast per class)
python3 - "$T/set" <<'PY'
import os, random, sys
r = random.Random(7)
for cls, n, base in (("Tumor", 36, (180, 80, 140)), ("Normal", 6, (230, 190, 210))):
    os.makedirs(os.path.join(sys.argv[1], cls), exist_ok=True)
    for i in range(n):
        px = bytes(min(255, max(0, base[k % 3] + r.randrange(-30, 31))) for k in range(32 * 32 * 3))
        open(os.path.join(sys.argv[1], cls, "%s%02d.ppm" % (cls, i)), "wb").write(b"P6 32 32 255\n" + px)
PY
for f in "$T"/set/*/*.ppm; do vips copy "$f" "${f%.ppm}.png" && rm "$f"; done
DB="$T/d.db"
"$M" db "$DB" import-patches "$T/set" --mpp 1 --mags 10 --png -q || { echo "FAIL: import"; exit 1; }
sqlite3 "$DB" "INSERT INTO splits SELECT id, 'train' FROM slides" || { echo "FAIL: split"; exit 1; }

"$M" db "$DB" balance --by patch --out "$T/bal.csv" > "$T/o" 2> "$T/e"; rc=$?
ok "balance rc" '[ $rc -eq 0 ] && grep -qx "$T/bal.csv: 42 train patches, 2 classes, balanced by patch" "$T/e"'
ok "balance table" 'grep -q "^Tumor  *36  *36  *0.5000  *21.0$" "$T/o" && grep -q "^Normal  *6  *6  *0.5000  *21.0$" "$T/o"'
ok "balance file" '[ "$(head -1 "$T/bal.csv")" = "patch_id,class,group,weight" ] && [ $(wc -l < "$T/bal.csv") -eq 43 ]'
# share of class 0 (Normal: imported first, id 0) over all epochs' draws, in percent
share() { python3 -c "import json,sys; d=[json.loads(l)['drawn_per_class'] for l in open(sys.argv[1])];
t=[sum(x) for x in zip(*d)]; print(round(100*t[0]/sum(t)))" "$1"; }
"$M" train "$DB" --method supervised --mag 10 --out "$T/b.mpk" --epochs 4 --batch 8 --sampling "$T/bal.csv" -q 2> "$T/e"; rc=$?
ok "train with sampling" '[ $rc -eq 0 ] && [ -s "$T/b.mpk" ]'
ok "42 draws per epoch" '[ "$(python3 -c "import json,sys; print(set(sum(json.loads(l)[\"drawn_per_class\"]) for l in open(sys.argv[1])))" "$T/b.log.jsonl")" = "{42}" ]'
s=$(share "$T/b.log.jsonl")
ok "balanced draws ($s% Normal, want 40..60)" '[ "$s" -ge 40 ] && [ "$s" -le 60 ]'
# control: equal weights draw the split's 1:6 ratio
{ echo "patch_id,class,group,weight"; sqlite3 -csv "$DB" "SELECT p.id, 0, '', 1 FROM patches p"; } > "$T/flat.csv"
"$M" train "$DB" --method supervised --mag 10 --out "$T/f.mpk" --epochs 4 --batch 8 --sampling "$T/flat.csv" -q 2>/dev/null
s=$(share "$T/f.log.jsonl")
ok "equal weights stay imbalanced ($s% Normal)" '[ "$s" -le 25 ]'
# no --sampling: nothing drawn with replacement, no drawn_per_class in the log
"$M" train "$DB" --method supervised --mag 10 --out "$T/n.mpk" --epochs 1 --batch 8 -q 2>/dev/null
ok "plain log" '! grep -q drawn_per_class "$T/n.log.jsonl"'

# by slide and by patient run (weights checked in the db-sampling unit test)
ok "by patient" '"$M" db "$DB" balance --by patient --out "$T/p.csv" -q && [ $(wc -l < "$T/p.csv") -eq 43 ]'
ok "by slide" '"$M" db "$DB" balance --by slide --out "$T/s.csv" -q && [ $(wc -l < "$T/s.csv") -eq 43 ]'

# errors
u() { "$M" db "$DB" balance "$@" 2> "$T/e"; echo $?; }
ok "no --by" '[ $(u --out "$T/x.csv") -eq 1 ] && tail -1 "$T/e" | grep -qx "magpie: error: db balance: --by and --out are required"'
ok "bad --by" '[ $(u --by class --out "$T/x.csv") -eq 1 ] && grep -qx "magpie: error: db balance: bad value for --by: .class. (patch, slide or patient)" "$T/e"'
ok "unknown split" '[ $(u --by patch --split testing --out "$T/x.csv") -eq 1 ] && grep -qx "magpie: error: db balance: unknown split .testing. (known: train, val, test, unlabeled)" "$T/e"'
ok "empty split" '[ $(u --by patch --split test --out "$T/x.csv") -eq 2 ] && grep -q "the test split has no labelled patches" "$T/e" && [ ! -e "$T/x.csv" ]'
echo "patch_id,class,group,weight
99999,0,,1" > "$T/bad.csv"
"$M" train "$DB" --method supervised --mag 10 --out "$T/x.mpk" --epochs 1 --sampling "$T/bad.csv" -q 2> "$T/e"; rc=$?
ok "list for another dataset" '[ $rc -eq 2 ] && [ "$(cat "$T/e")" = "magpie: error: $T/bad.csv: patch 99999 is not a labelled patch of $DB'"'"'s train split (a list made for another dataset or split? make it again with \`magpie db DB balance\`)" ]'
"$M" train "$DB" --method supervised --mag 10 --out "$T/x.mpk" --epochs 1 --sampling "$T/nope.csv" -q 2> "$T/e"; rc=$?
ok "missing list" '[ $rc -eq 2 ] && [ $(wc -l < "$T/e") -eq 1 ] && grep -q "nope.csv" "$T/e"'
exit $fail
