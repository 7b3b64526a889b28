#!/bin/sh
# The README's main job on a small default: synthesize → magpie run (tile) → split → train the
# 10x teacher → distil the 1.25x student → eval → magpie run (infer) → report.html, each step's
# time printed; then a rerun that resumes every step (slides kept, tiles and heatmaps skipped,
# training finished) and leaves the same dataset.
set -u
T=$(mktemp -d /tmp/mp_demo_XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
no() { echo "FAIL: $*"; fail=1; }
DEMO="demo $T/d --slides 24 --width 2048 --height 2048 --teacher-epochs 2 --student-epochs 2"
"$MAGPIE_BIN" $DEMO >"$T/out" 2>"$T/err" || { echo "FAIL: demo exit $?"; tail -20 "$T/err"; exit 1; }
[ "$(tail -1 "$T/out")" = "$T/d/report.html" ] || no "the last line of stdout is not the report's path: $(tail -1 "$T/out")"
[ -s "$T/d/report.html" ] || no "no report"
[ "$(grep -c '^   step [1-7] took [0-9.]* s' "$T/err")" = 7 ] || no "seven timed steps: $(grep step "$T/err")"
for f in manifest.csv dataset.db status.csv summary.json models/teacher.mpk models/student.mpk; do
    [ -s "$T/d/$f" ] || no "missing $f"
done
db="$T/d/dataset.db"
[ "$(sqlite3 "$db" "SELECT count(*) FROM slides WHERE status = 'done'")" = 24 ] || no "24 slides tiled"
[ "$(sqlite3 "$db" "SELECT count(*) FROM classes")" = 3 ] || no "3 classes"
[ "$(sqlite3 "$db" "SELECT count(DISTINCT split) FROM splits")" = 4 ] || no "train, val, test and unlabeled splits"
[ "$(sqlite3 "$db" "SELECT count(DISTINCT slide_id) FROM predictions WHERE mag = 1.25")" = 24 ] || no "student predictions for every slide"
[ "$(ls "$T/d/heatmaps" | wc -l)" = 24 ] || no "24 heatmap folders"
grep -q "balanced" "$T/out" || no "no evaluation printed"
grep -c ',"done",' "$T/d/status.csv" | grep -qx 24 || no "status.csv: 24 done"
dump() { sqlite3 "$db" "SELECT s.path, p.gx, p.gy, i.mag, length(i.data) FROM patches p JOIN slides s ON s.id = p.slide_id JOIN images i ON i.patch_id = p.id ORDER BY 1, 2, 3, 4"; sqlite3 "$db" "SELECT slide_path, gx, gy, probs FROM predictions ORDER BY 1, 2, 3"; }
dump >"$T/d1"
"$MAGPIE_BIN" $DEMO >"$T/out2" 2>"$T/err2" || { no "rerun exit $?"; tail -5 "$T/err2"; }
grep -q "the slides are there already" "$T/err2" || no "the rerun synthesized again"
python3 - "$T/d/summary.json" <<'PY' || no "the rerun did not skip the inference"
import json, sys
s = json.load(open(sys.argv[1]))["slides"]
assert s["infer_skipped"] == 24 and s["inferred"] == 0, s
PY
dump >"$T/d2"
cmp -s "$T/d1" "$T/d2" || no "the rerun changed the dataset"
exit $fail
