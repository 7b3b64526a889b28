#!/bin/sh
# magpie eval through the binary: a checkpoint whose input size differs from the dataset's
# images is refused in one line (it used to read the freed loader to build that message: ASan
# heap-use-after-free), so is one with another number of classes (the message read the freed
# item set and said "0 classes"), and a matching checkpoint evaluates. The intervals name their
# resampling unit (slide by default, patient on request, the patch interval only beside them when
# asked) and the slide vote threshold says where it came from: val when evaluating another split,
# val itself (said so) when evaluating val, the default 0.5 when there is no validation split.
set -u
T=$(mktemp -d /tmp/mp_eval_cli.XXXXXX)
trap 'rm -rf "$T"' EXIT
B="$MAGPIE_BIN"
fail=0
no() { echo "FAIL: $*"; fail=1; }
has() { grep -qxF "$1" "$2" || no "want line: $1 -- got: $(cat "$2")"; }

# a small labelled, split dataset (what magpie demo built before it became the whole product)
{ "$B" synth "$T/d/slides" --slides 3 --patients 2 --width 4096 --height 3072 --seed 1 -q &&
    "$B" tile "$T/d/dataset.db" "$T"/d/slides/*.tiff --mags 10,1.25 -q &&
    "$B" db "$T/d/dataset.db" labels import "$T/d/slides/slides.csv" "$T"/d/slides/*.geojson &&
    "$B" db "$T/d/dataset.db" split --by patient --ratios 0.5,0.5,0 --stratify none --seed 1; } >/dev/null 2>"$T/e" ||
    { echo "FAIL: dataset setup: $(cat "$T/e")"; exit 1; }
D="$T/d/dataset.db"
px=$(sqlite3 "$D" "SELECT DISTINCT width FROM images WHERE mag = 1.25")
[ "$px" = 28 ] || { echo "FAIL: the demo's 1.25x images are '$px' px, expected 28"; exit 1; }
k=$(sqlite3 "$D" "SELECT count(*) FROM classes")
"$B" model init --out "$T/r.mpk" --classes "$k" --widths 32,32,32,32 >/dev/null 2>"$T/e" &&
"$B" model export "$T/r.mpk" "$T/r.safetensors" >/dev/null 2>>"$T/e" &&
"$B" model init --out "$T/r2.mpk" --classes $((k + 1)) --widths 32,32,32,32 >/dev/null 2>>"$T/e" &&
"$B" model export "$T/r2.mpk" "$T/r2.safetensors" >/dev/null 2>>"$T/e" &&
"$B" model import "$T/r2.safetensors" --out "$T/mk.mpk" --mag 1.25 --size 28 --mean 0.5,0.5,0.5 --std 0.2,0.2,0.2 >/dev/null 2>>"$T/e" &&
"$B" model import "$T/r.safetensors" --out "$T/m32.mpk" --mag 1.25 --size 32 --mean 0.5,0.5,0.5 --std 0.2,0.2,0.2 >/dev/null 2>>"$T/e" &&
"$B" model import "$T/r.safetensors" --out "$T/m28.mpk" --mag 1.25 --size 28 --mean 0.5,0.5,0.5 --std 0.2,0.2,0.2 >/dev/null 2>>"$T/e" ||
    { echo "FAIL: model setup: $(cat "$T/e")"; exit 1; }

"$B" eval "$D" "$T/m32.mpk" --split val --bootstrap 10 >"$T/o" 2>"$T/e"; rc=$?
[ $rc -eq 2 ] || no "size mismatch: exit $rc, expected 2"
has "magpie: error: $D: the model takes 32 px at 1.25x, the dataset's images are 28 px" "$T/e"

"$B" eval "$D" "$T/mk.mpk" --split val --bootstrap 10 >"$T/o" 2>"$T/e"; rc=$?
[ $rc -eq 2 ] || no "class count mismatch: exit $rc, expected 2"
has "magpie: error: $D: the dataset has $k classes, the model $((k + 1))" "$T/e"

"$B" eval "$D" "$T/m28.mpk" --split val --bootstrap 10 --json >"$T/o" 2>"$T/e" || no "matching eval exit $?: $(cat "$T/e")"
grep -q '"balanced_accuracy"' "$T/o" || no "matching eval: no metrics in $(cat "$T/o")"
in_json() { grep -qF "$1" "$T/o" || no "$2: want $1 in $(cat "$T/o")"; }
not_json() { ! grep -qF "$1" "$T/o" || no "$2: did not want $1 in $(cat "$T/o")"; }
in_json '"ci_unit":"slide"' "default unit"
not_json '"ci_patch"' "patch interval not asked for"
in_json '"vote_threshold_source":"val (the evaluated split)"' "eval on val"

"$B" eval "$D" "$T/m28.mpk" --split train --bootstrap 10 --json --ci-by patient,patch >"$T/o" 2>"$T/e" || no "train eval exit $?: $(cat "$T/e")"
in_json '"ci_unit":"patient"' "--ci-by patient"
in_json '"ci_patch":[' "--ci-by patient,patch"
in_json '"vote_threshold_source":"val"' "eval on train"
"$B" eval "$D" "$T/m28.mpk" --split train --bootstrap 10 --ci-by patch >"$T/o" 2>"$T/e" || no "text eval exit $?: $(cat "$T/e")"
grep -q "resamples of whole slides" "$T/o" || no "text output does not name the unit: $(cat "$T/o")"
grep -q "95% CI by patch" "$T/o" || no "text output lacks the patch column: $(cat "$T/o")"
grep -q "threshold 0\.[0-9]* (chosen on the validation split)" "$T/o" || no "text output lacks the threshold's source: $(cat "$T/o")"

# without a validation split the threshold is the default, and says so
cp "$D" "$T/noval.db"
sqlite3 "$T/noval.db" "DELETE FROM splits WHERE split = 'val'" || no "sqlite3 delete"
"$B" eval "$T/noval.db" "$T/m28.mpk" --split train --bootstrap 10 --json >"$T/o" 2>"$T/e" || no "no-val eval exit $?: $(cat "$T/e")"
in_json '"vote_threshold":0.50,"vote_threshold_source":"default"' "no validation split"

"$B" eval "$D" "$T/m28.mpk" --ci-by slide,patient >"$T/o" 2>"$T/e"; rc=$?
[ $rc -eq 1 ] || no "two cluster units: exit $rc, expected 1"
has "magpie: error: eval: bad value for --ci-by: 'slide,patient' (slide, patient, optionally with ,patch)" "$T/e"
exit $fail
