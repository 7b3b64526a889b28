#!/bin/sh
# magpie infer STUDENT --cascade TEACHER: threshold 0 is the student alone and a threshold above 1
# the teacher alone on the same cells (probability.tif byte for byte); in between every cell holds
# the teacher's probabilities exactly where the student's confidence is below the threshold (via
# --db rows); --cascade-calibrate chooses the threshold on the val split, refuses test and train,
# and the calibrated run equals a run given that threshold; bad pairs give one-line errors.
set -u
T=$(mktemp -d /tmp/mp_cascade_cli.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
B="$MAGPIE_BIN"
fail=0
no() { echo "FAIL: $*"; fail=1; }
has() { grep -qxF "$1" "$2" || no "want line: $1 -- got: $(cat "$2")"; }
jnum() { sed -n "s/.*\"$1\": \([-0-9.e]*\).*/\1/p" "$2" | head -1; } # KEY FILE: a number of prediction.json

"$B" synth "$T/s" --slides 2 --width 4096 --height 3072 --mpp 0.5 --quiet || { echo "synth failed"; exit 1; }
s0="$T/s/synth_000.tiff"; s1="$T/s/synth_001.tiff"
mk() { # OUT SEED MAG SIZE [CLASSES]: an initialised ResNet-GN with a model card (one group: with one
       # group per channel an untrained network gives every patch the same output)
    "$B" model init --out "$T/i.mpk" --classes "${5:-3}" --widths 32,32,32,32 --seed "$2" >/dev/null &&
    "$B" model export "$T/i.mpk" "$T/i.safetensors" >/dev/null &&
    "$B" model import "$T/i.safetensors" --out "$1" --mag "$3" --size "$4" --mean 0.8,0.6,0.7 --std 0.2,0.2,0.2 --groups 1 >/dev/null
}
mk "$T/st.mpk" 1 1.25 28 && mk "$T/te.mpk" 7 10 224 && mk "$T/te4.mpk" 7 10 224 4 && mk "$T/te112.mpk" 7 10 112 ||
    { echo "model setup failed"; exit 1; }
run() { "$B" infer "$@" --float32 -q; }

# threshold 0: the student alone, byte for byte; nothing sent
run "$T/st.mpk" "$s0" --out "$T/st" || no "student run"
run "$T/st.mpk" "$s0" --out "$T/c0" --cascade "$T/te.mpk" --cascade-threshold 0 || no "cascade 0 run"
cmp -s "$T/st/synth_000/probability.tif" "$T/c0/synth_000/probability.tif" || no "threshold 0 != the student alone"
cmp -s "$T/st/synth_000/heatmap.tif" "$T/c0/synth_000/heatmap.tif" || no "threshold 0 heatmap != the student's"
[ "$(jnum cells_to_teacher "$T/c0/synth_000/prediction.json")" = 0 ] || no "threshold 0 sent cells"
# above 1: the teacher on every cell, the same probabilities as the teacher alone
run "$T/te.mpk" "$s0" --out "$T/te" || no "teacher run"
run "$T/st.mpk" "$s0" --out "$T/c2" --cascade "$T/te.mpk" --cascade-threshold 1.01 || no "cascade 1.01 run"
cmp -s "$T/te/synth_000/probability.tif" "$T/c2/synth_000/probability.tif" || no "threshold > 1 != the teacher alone"
ev=$(jnum evaluated "$T/c2/synth_000/prediction.json")
[ "${ev:-0}" -gt 10 ] && [ "$(jnum cells_to_teacher "$T/c2/synth_000/prediction.json")" = "$ev" ] ||
    no "threshold > 1: $(jnum cells_to_teacher "$T/c2/synth_000/prediction.json") of $ev cells to the teacher"
[ "$(jnum fraction_to_teacher "$T/c2/synth_000/prediction.json")" = 1.0 ] || no "threshold > 1: fraction"
grep -q '"threshold_source": "--cascade-threshold"' "$T/c2/synth_000/prediction.json" || no "threshold source"

# in between: per cell, the teacher's probabilities below the threshold, the student's above
D="$T/p.db"
"$B" infer "$T/st.mpk" "$s0" --out "$T/pst" --db "$D" -q && "$B" infer "$T/te.mpk" "$s0" --out "$T/pte" --db "$D" -q ||
    no "--db runs"
q() { sqlite3 "$D" "$1"; }
hs=$(sed -n 's/.*"checkpoint_hash": "\([^"]*\)".*/\1/p' "$T/pst/synth_000/prediction.json")
ht=$(sed -n 's/.*"checkpoint_hash": "\([^"]*\)".*/\1/p' "$T/pte/synth_000/prediction.json")
n=$(q "SELECT count(*) FROM predictions WHERE model_fingerprint = '$hs'")
# halfway between the two middle confidences (an untrained student's are all near 1/3)
thr=$(q "SELECT printf('%.9f', avg(confidence)) FROM (SELECT confidence FROM predictions WHERE model_fingerprint = '$hs'
         ORDER BY confidence LIMIT 2 OFFSET $n / 2 - 1)")
"$B" infer "$T/st.mpk" "$s0" --out "$T/pc" --db "$D" --cascade "$T/te.mpk" --cascade-threshold "$thr" -q || no "cascade $thr run"
hc="cascade:$hs+$ht@$(printf '%.9g' "$thr")"
below=$(q "SELECT count(*) FROM predictions WHERE model_fingerprint = '$hs' AND confidence < $thr")
[ "$below" -gt 0 ] && [ "$below" -lt "$n" ] || no "threshold $thr splits nothing ($below of $n)"
[ "$(jnum cells_to_teacher "$T/pc/synth_000/prediction.json")" = "$below" ] || no "cells_to_teacher != $below"
[ "$(q "SELECT count(*) FROM predictions WHERE model_fingerprint = '$hc'")" = "$n" ] || no "cascade rows in --db"
# the student's cells are its own probabilities exactly; the teacher's agree to 1e-6 (its batches
# hold other cells than when it runs alone, and the engine's GEMM blocking follows the batch)
J="FROM predictions c JOIN predictions s ON s.gx = c.gx AND s.gy = c.gy AND s.model_fingerprint = '$hs'
   JOIN predictions t ON t.gx = c.gx AND t.gy = c.gy AND t.model_fingerprint = '$ht' WHERE c.model_fingerprint = '$hc'"
[ "$(q "SELECT count(*) $J AND s.confidence >= $thr AND c.probs != s.probs")" = 0 ] || no "kept cells differ from the student"
far() { q "SELECT count(*) $J AND s.confidence < $thr AND (SELECT max(abs(a.value - b.value)) FROM json_each(c.probs) a
          JOIN json_each($1.probs) b ON a.key = b.key) > $2"; }
[ "$(far t 1e-6)" = 0 ] || no "$(far t 1e-6) sent cells differ from the teacher"
[ "$(far s 1e-3)" = "$below" ] || no "sent cells should not hold the student's probabilities"
# --cascade-calibrate-slides: no labels, the teacher's class per cell is the reference. Calibrated
# on s0 itself, the cascade sends exactly the cells that an independent walk of the rule (lowest
# threshold whose balanced agreement with the teacher is within the tolerance) over --db's rows
# sends. These untrained models never agree (one class each), so agreement is the share sent: a
# 50-point tolerance sends half the cells.
CTOL=50
"$B" infer "$T/st.mpk" "$s0" --out "$T/cs" --cascade "$T/te.mpk" --cascade-calibrate-slides "$s0" --cascade-tolerance $CTOL \
    --float32 2>"$T/e" ||
    no "slide-calibrated run: $(cat "$T/e")"
grep -q "^cascade threshold [0-9.e-]*, calibrated on 1 slide ($s0): $n tissue cells, the teacher's class as reference; agreement (balanced) student 0\.[0-9]*, cascade [01]\.[0-9]* with [0-9.]*% of the cells to the teacher; rule: the lowest threshold within $CTOL points of the teacher" "$T/e" ||
    no "slide calibration line: $(cat "$T/e")"
want=$(python3 - "$D" "$hs" "$ht" "$CTOL" <<'PY'
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
rows = lambda fp: {(gx, gy): json.loads(p) for gx, gy, p in
                   db.execute("SELECT gx, gy, probs FROM predictions WHERE model_fingerprint = ?", (fp,))}
s, t = rows(sys.argv[2]), rows(sys.argv[3])
am = lambda p: max(range(len(p)), key=lambda k: (p[k], -k))
cells = sorted(s, key=lambda c: max(s[c]))
lab = {c: am(t[c]) for c in cells}
tot, cur = {}, {}
for c in cells:
    tot[lab[c]] = tot.get(lab[c], 0) + 1
    cur[lab[c]] = cur.get(lab[c], 0) + (am(s[c]) == lab[c])
bacc = lambda: sum(cur[k] / tot[k] for k in tot) / len(tot)
k = 0
while bacc() < 1 - float(sys.argv[4]) / 100 - 1e-12 and k < len(cells):
    v = max(s[cells[k]])
    while k < len(cells) and max(s[cells[k]]) == v:
        c = cells[k]
        cur[lab[c]] += 1 - (am(s[c]) == lab[c])
        k += 1
print(k)
PY
)
got=$(jnum cells_to_teacher "$T/cs/synth_000/prediction.json")
[ -n "$want" ] && [ "$want" -gt 0 ] && [ "$want" -lt "$n" ] || no "the rule should send some cells, not $want of $n"
[ "$got" = "$want" ] || no "slide calibration sent $got cells, the rule $want"
grep -q "\"threshold_source\": \"calibrated on 1 slide ($s0): " "$T/cs/synth_000/prediction.json" || no "slide-calibrated source"
"$B" infer "$T/st.mpk" "$s0" --out "$T/x" --cascade "$T/te.mpk" --cascade-calibrate-slides "$T/none.tiff" -q 2>"$T/e"
[ $? -eq 2 ] || no "missing calibration slide: exit"
grep -q "^magpie: error: calibration slide: $T/none.tiff: " "$T/e" || no "missing calibration slide: $(cat "$T/e")"
"$B" infer "$T/st.mpk" "$s0" --out "$T/x" --cascade "$T/te.mpk" --cascade-calibrate-slides "$s0" --cascade-threshold 0.5 -q 2>/dev/null
[ $? -eq 1 ] || no "both slides and threshold: exit"
[ -e "$T/x" ] && no "a refused slide calibration left --out behind"
# the cascade's outputs are keyed by the pair and the threshold: a rerun skips, another threshold redoes
"$B" infer "$T/st.mpk" "$s0" --out "$T/pc" --db "$D" --cascade "$T/te.mpk" --cascade-threshold "$thr" 2>"$T/e" || no "rerun"
grep -q "outputs current, skipped" "$T/e" || no "cascade rerun should skip: $(cat "$T/e")"
"$B" infer "$T/st.mpk" "$s0" --out "$T/pc" --cascade "$T/te.mpk" --cascade-threshold 0.9 2>"$T/e" || no "other threshold"
grep -q "skipped" "$T/e" && no "another threshold must not skip"

# calibration on the val split: classes as the models', slide labels, both slides in val
"$B" tile "$T/d.db" "$s0" "$s1" --mags 10,1.25 --size 224 -q || no "tile"
sqlite3 "$T/d.db" "INSERT INTO classes VALUES (0, 'class0'), (1, 'class1'), (2, 'class2');
                   UPDATE slides SET label = CASE name WHEN 'synth_000' THEN 'class0' ELSE 'class2' END;
                   INSERT INTO splits SELECT id, 'val' FROM slides" || no "labels and splits"
"$B" infer "$T/st.mpk" "$s1" --out "$T/cal" --cascade "$T/te.mpk" --cascade-calibrate "$T/d.db" --float32 2>"$T/e" ||
    no "calibrated run: $(cat "$T/e")"
grep -q "^cascade threshold [0-9.e-]*, calibrated on $T/d.db, split val: [0-9]* labelled patches; balanced accuracy student" "$T/e" ||
    no "calibration line: $(cat "$T/e")"
ct=$(python3 -c 'import json, sys; print(repr(json.load(open(sys.argv[1]))["cascade"]["threshold"]))' "$T/cal/synth_001/prediction.json")
grep -q "\"threshold_source\": \"calibrated on $T/d.db, split val: " "$T/cal/synth_001/prediction.json" || no "calibrated source"
run "$T/st.mpk" "$s1" --out "$T/given" --cascade "$T/te.mpk" --cascade-threshold "$ct" || no "run at the calibrated threshold"
cmp -s "$T/cal/synth_001/probability.tif" "$T/given/synth_001/probability.tif" || no "calibrated != given $ct"
# never test, never train; without labelled val patches, or with other class names: refused
"$B" infer "$T/st.mpk" "$s1" --out "$T/x" --cascade "$T/te.mpk" --cascade-calibrate "$T/d.db" --cascade-split test -q 2>"$T/e"
[ $? -eq 1 ] || no "--cascade-split test: exit"
has "magpie: error: $T/d.db: the cascade threshold is chosen on the val split, never on test (the test figures would no longer be held out)" "$T/e"
"$B" infer "$T/st.mpk" "$s1" --out "$T/x" --cascade "$T/te.mpk" --cascade-calibrate "$T/d.db" --cascade-split train -q 2>"$T/e"
[ $? -eq 1 ] || no "--cascade-split train: exit"
has "magpie: error: $T/d.db: the cascade threshold is chosen on the val split, not 'train' (the models were fit on it: their confidence there is optimistic)" "$T/e"
sqlite3 "$T/d.db" "UPDATE splits SET split = 'test'"
"$B" infer "$T/st.mpk" "$s1" --out "$T/x" --cascade "$T/te.mpk" --cascade-calibrate "$T/d.db" -q 2>"$T/e"; [ $? -eq 2 ] || no "empty val: exit"
has "magpie: error: $T/d.db: the val split has no labelled patches (magpie db $T/d.db split ..., or give --cascade-threshold)" "$T/e"
sqlite3 "$T/d.db" "UPDATE splits SET split = 'val'; UPDATE classes SET name = 'Tumor' WHERE id = 1"
"$B" infer "$T/st.mpk" "$s1" --out "$T/x" --cascade "$T/te.mpk" --cascade-calibrate "$T/d.db" -q 2>"$T/e"; [ $? -eq 2 ] || no "classes: exit"
has "magpie: error: $T/d.db: class 1 is 'Tumor', the models' is 'class1'" "$T/e"
[ -e "$T/x" ] && no "a refused calibration left --out behind"

# pairs that cannot cascade, and usage
"$B" infer "$T/st.mpk" "$s0" --out "$T/x" --cascade "$T/te4.mpk" --cascade-threshold 0.5 -q 2>"$T/e"; [ $? -eq 2 ] || no "4 classes: exit"
has "magpie: error: $T/te4.mpk: 4 classes, the student $T/st.mpk has 3; a cascade needs the same classes" "$T/e"
"$B" infer "$T/st.mpk" "$s0" --out "$T/x" --cascade "$T/te112.mpk" --cascade-threshold 0.5 -q 2>"$T/e"; [ $? -eq 2 ] || no "square: exit"
has "magpie: error: $T/te112.mpk: its 112 px at 10x cover 112 µm, the student's 28 px at 1.25x 224 µm; a cascade needs the same square" "$T/e"
"$B" infer "$T/st.mpk" "$s0" --out "$T/x" --cascade "$T/none.mpk" --cascade-threshold 0.5 -q 2>"$T/e"; [ $? -eq 2 ] || no "no teacher: exit"
has "magpie: error: $T/none.mpk: No such file or directory" "$T/e"
"$B" infer "$T/st.mpk" "$s0" --out "$T/x" --cascade "$T/te.mpk" -q 2>"$T/e"; [ $? -eq 1 ] || no "no threshold: exit"
"$B" infer "$T/st.mpk" "$s0" --out "$T/x" --cascade "$T/te.mpk" --cascade-threshold 0.5 --cascade-calibrate "$T/d.db" -q 2>/dev/null
[ $? -eq 1 ] || no "both threshold and calibrate: exit"
"$B" infer "$T/st.mpk" "$s0" --out "$T/x" --cascade-threshold 0.5 -q 2>/dev/null; [ $? -eq 1 ] || no "threshold without --cascade: exit"
"$B" infer "$T/st.mpk" "$s0" --out "$T/x" --cascade "$T/te.mpk" --cascade-threshold -1 -q 2>/dev/null; [ $? -eq 1 ] || no "negative threshold: exit"
[ -e "$T/x" ] && no "refused cascades left --out behind"
"$B" infer --help | grep -q -- "--cascade TEACHER" || no "--help mentions --cascade"
[ $fail -eq 0 ] && echo "cascade cli: all checks passed"
exit $fail
