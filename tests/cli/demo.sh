#!/bin/sh
# The README's main job at a small size: synthesize -> magpie run (tile) -> split -> train the
# 10x teacher -> distil the 1.25x student -> eval both -> magpie run (infer) -> report.html, each
# step's time printed. 24 slides of 2560 px (12 patients, 4 per class) is the smallest that
# leaves every class with patches in train, val and test. Then a rerun that resumes every step
# (slides kept, tiles and heatmaps skipped, both trainings recorded as done) and changes nothing.
# No time assertions; the metrics are checked for sanity, not for accuracy (2 epochs).
set -u
T=$(mktemp -d /tmp/mp_demo_XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
no() { echo "FAIL: $*"; fail=1; }
DEMO="demo $T/d --slides 24 --width 2560 --height 2560 --teacher-epochs 2 --student-epochs 2"
"$MAGPIE_BIN" $DEMO >"$T/out" 2>"$T/err" || { echo "FAIL: demo exit $?"; tail -20 "$T/err"; exit 1; }
[ "$(tail -1 "$T/out")" = "$T/d/report.html" ] || no "the last line of stdout is not the report's path: $(tail -1 "$T/out")"
[ "$(grep -c '^   step [1-7] took [0-9.]* s' "$T/err")" = 7 ] || no "seven timed steps: $(grep step "$T/err")"
grep -q "^Done in [0-9.]* s. The report: $T/d/report.html\$" "$T/err" || no "the closing line: $(tail -3 "$T/err")"
for f in manifest.csv dataset.db status.csv summary.json report.html models/teacher.mpk models/student.mpk \
    models/teacher.svg models/student.svg models/teacher.log.jsonl models/student.log.jsonl eval/teacher.json \
    eval/student.json; do
    [ -s "$T/d/$f" ] || no "missing $f"
done
db="$T/d/dataset.db"
[ "$(sqlite3 "$db" "SELECT count(*) FROM slides WHERE status = 'done'")" = 24 ] || no "24 slides tiled"
[ "$(sqlite3 "$db" "SELECT count(*) FROM classes")" = 3 ] || no "3 classes"
[ "$(sqlite3 "$db" "SELECT count(DISTINCT split) FROM splits")" = 4 ] || no "train, val, test and unlabeled splits"
# every class has patches in train, val and test (the labels come from the manifest)
[ "$(sqlite3 "$db" "SELECT count(*) FROM (SELECT sp.split, s.label FROM patches p JOIN slides s ON s.id = p.slide_id JOIN splits sp ON sp.slide_id = s.id WHERE sp.split IN ('train', 'val', 'test') GROUP BY 1, 2)")" = 9 ] ||
    no "every class in every split: $(sqlite3 "$db" "SELECT sp.split, s.label, count(*) FROM patches p JOIN slides s ON s.id = p.slide_id JOIN splits sp ON sp.slide_id = s.id GROUP BY 1, 2")"
[ "$(grep -c '^Tumor \|^Stroma \|^Lymphocyte ' "$T/out")" = 3 ] || no "patches per split and class printed"
[ "$(sqlite3 "$db" "SELECT count(DISTINCT slide_id) FROM predictions WHERE mag = 1.25")" = 24 ] || no "student predictions for every slide"
[ "$(ls "$T/d/heatmaps" | wc -l)" = 24 ] || no "24 heatmap folders"
grep -c ',"done",' "$T/d/status.csv" | grep -qx 24 || no "status.csv: 24 done"
# the printed comparison: both models, numbers that are probabilities, chance and the FLOPs ratio
grep -q '^chance: balanced accuracy 0.333 (3 classes), AUC 0.5$' "$T/out" || no "chance line: $(cat "$T/out")"
grep -q '^the student costs 64x fewer FLOPs per patch than the teacher$' "$T/out" || no "FLOPs ratio"
python3 - "$T/out" "$T/d" <<'PY' || no "the printed metrics"
import json, re, sys
out, d = open(sys.argv[1]).read(), sys.argv[2]
rows = {m.group(1): m for m in re.finditer(r"^(teacher|student) +([0-9.]+)x +(\d+) +([0-9.]+) +([0-9.]+) \[([0-9.]+), ([0-9.]+)\] +([0-9.]+) \[([0-9.]+), ([0-9.]+)\] +([0-9.]+)$", out, re.M)}
assert set(rows) == {"teacher", "student"}, out
for who, m in rows.items():
    j = json.load(open(f"{d}/eval/{who}.json"))
    ba, lo, hi = (float(m.group(k)) for k in (5, 6, 7))
    assert 0 <= lo <= ba <= hi <= 1, (who, ba, lo, hi)
    assert abs(ba - j["balanced_accuracy"]["value"]) < 6e-4, (who, ba, j["balanced_accuracy"])
    assert 0 <= float(m.group(8)) <= 1 and 0 <= float(m.group(11)) <= 1, m.group(0)
    assert j["split"] == "test" and j["patches"] > 0 and j["slides"] == 6, j
assert float(rows["teacher"].group(2)) == 10 and float(rows["student"].group(2)) == 1.25
# the training logs: a real validation figure every epoch (no -1 or null)
for who in ("teacher", "student"):
    for line in open(f"{d}/models/{who}.log.jsonl"):
        e = json.loads(line)
        if "epoch" in e:
            assert e["val_balanced_accuracy"] is not None and 0 <= e["val_balanced_accuracy"] <= 1, (who, e)
PY
grep -q "val balanced accuracy -" "$T/err" && no "a negative validation figure was printed"
# the report shows how both models were trained and how they did on the test split (teacher first)
R="$T/d/report.html"
grep -q '<h2>Models</h2>' "$R" || no "no Models section in the report"
[ "$(grep -o 'src="data:image/svg+xml;base64,' "$R" | wc -l)" = 2 ] || no "two training curves in the report"
grep -q 'alt="training curve of its teacher"' "$R" && grep -q 'alt="training curve of the model"' "$R" || no "curve captions"
[ "$(grep -o '<tr><td>[a-z]*\.json</td>' "$R" | tr '\n' ' ')" = "<tr><td>teacher.json</td> <tr><td>student.json</td> " ] ||
    no "the evaluations in the report: $(grep -o '<tr><td>[a-z]*\.json</td>' "$R")"
grep -q 'heatmap column: p(Lymphocyte) over the slide' "$R" || no "the heatmap legend"
# the heatmap pictures are the overlay's square slide picture, without its legend panel
for f in "$T"/d/thumbs/*.heat.jpg; do
    [ "$(vipsheader -f width "$f")" = "$(vipsheader -f height "$f")" ] || no "$f is not the square picture: $(vipsheader "$f")"
done
dump() { sqlite3 "$db" "SELECT s.path, p.gx, p.gy, i.mag, length(i.data) FROM patches p JOIN slides s ON s.id = p.slide_id JOIN images i ON i.patch_id = p.id ORDER BY 1, 2, 3, 4"; sqlite3 "$db" "SELECT slide_path, gx, gy, probs FROM predictions ORDER BY 1, 2, 3"; }
dump >"$T/d1"
cp "$T/d/models/student.mpk" "$T/student1.mpk"
"$MAGPIE_BIN" $DEMO >"$T/out2" 2>"$T/err2" || { no "rerun exit $?"; tail -5 "$T/err2"; }
grep -q "the slides are there already" "$T/err2" || no "the rerun synthesized again"
[ "$(grep -c 'is trained already$' "$T/err2")" = 2 ] || no "the rerun trained again: $(grep -i 'epoch\|trained' "$T/err2")"
cmp -s "$T/d/models/student.mpk" "$T/student1.mpk" || no "the rerun changed the student"
python3 - "$T/d/summary.json" <<'PY' || no "the rerun did not skip the inference"
import json, sys
s = json.load(open(sys.argv[1]))["slides"]
assert s["infer_skipped"] == 24 and s["inferred"] == 0, s
PY
dump >"$T/d2"
cmp -s "$T/d1" "$T/d2" || no "the rerun changed the dataset"
exit $fail
