#!/bin/sh
# magpie run through the binary: the manifest checked before any work (every problem with its
# line, exit 1, nothing written), a missing slide failing alone (exit 3), every slide failing
# (exit 2), folders and globs, slides sharing a file name, tile + infer into one folder with the
# manifest's labels, patients and splits in the dataset, status.csv and summary.json, and a
# rerun that skips everything and changes nothing.
set -u
T=$(mktemp -d /tmp/mp_run_cli.XXXXXX)
trap 'rm -rf "$T"' EXIT
B="$MAGPIE_BIN"
fail=0
no() { echo "FAIL: $*"; fail=1; }
has() { grep -qxF "$1" "$2" || no "want line: $1 -- got: $(cat "$2")"; }

"$B" synth "$T/s" --slides 3 --width 2048 --height 2048 --mpp 0.5 --seed 4 -q || { echo "synth failed"; exit 1; }
# another synth_001.tiff (other content) in another folder
"$B" synth "$T/other" --slides 2 --width 2048 --height 2048 --mpp 0.5 --seed 9 -q || { echo "synth failed"; exit 1; }
"$B" model init --out "$T/r.mpk" --classes 3 --widths 32,32,32,32 >/dev/null &&
"$B" model export "$T/r.mpk" "$T/r.safetensors" >/dev/null &&
"$B" model import "$T/r.safetensors" --out "$T/m.mpk" --mag 1.25 --size 28 --mean 0,0,0 --std 1,1,1 >/dev/null ||
    { echo "model setup failed"; exit 1; }

# usage
"$B" run --help | grep -q "usage: magpie run MANIFEST --out DIR" || no "--help"
"$B" run "$T/s" >/dev/null 2>&1; [ $? -eq 1 ] || no "missing --out should exit 1"
"$B" run "$T/s" --out "$T/o" --steps infer 2>"$T/e"; [ $? -eq 1 ] || no "infer without --model should exit 1"
has "magpie: error: run: the infer step needs --model CKPT (see magpie run --help)" "$T/e"
# exact option names only: getopt's prefix matching took --mag for --mags
"$B" run "$T/s" --out "$T/o" --mag 10 2>"$T/e"; [ $? -eq 1 ] || no "--mag should exit 1"
has "magpie: error: run: unknown option '--mag' (did you mean '--mags'?) (see magpie run --help)" "$T/e"
[ -e "$T/o" ] && no "a refused option created the output folder"
"$B" report "$T/o" --ou "$T/r.html" 2>"$T/e"; [ $? -eq 1 ] || no "report --ou should exit 1"
has "magpie: error: report: unknown option '--ou' (did you mean '--out'?) (see magpie report --help)" "$T/e"
"$B" run "$T/s" --out "$T/o" --steps tile,cook 2>"$T/e"; [ $? -eq 1 ] || no "bad --steps should exit 1"

# manifest problems: all reported with their lines, exit 1, nothing run
cd "$T"
printf 'slide,Patient,colour,mpp,min_tissue,split\n' >m1.csv
printf 's/synth_000.tiff,p1,red,abc,0.5,train\n' >>m1.csv
printf 's/synth_001.tiff,p2,red,0.5,2,test\n' >>m1.csv
printf '\n' >>m1.csv
printf 's/synth_002.tiff,p3,red,,,holdout\n' >>m1.csv
printf './s/../s/synth_000.tiff,p4,red,,,\n' >>m1.csv
printf 's/synth_000.tiff,p5\n' >>m1.csv
"$B" run m1.csv --out "$T/o1" 2>"$T/e"; [ $? -eq 1 ] || no "bad manifest should exit 1"
has "magpie: error: m1.csv:1: unknown column 'colour' (columns: slide, patient, label, split, mpp, min_tissue)" "$T/e"
has "magpie: error: m1.csv:2: bad number in 'mpp': 'abc' (µm per pixel within 0.05-20, or empty)" "$T/e"
has "magpie: error: m1.csv:3: bad number in 'min_tissue': '2' (0..1, or empty)" "$T/e"
has "magpie: error: m1.csv:5: bad 'split': 'holdout' (train, val, test, unlabeled, or empty)" "$T/e"
has "magpie: error: m1.csv:7: 2 fields, the header has 6" "$T/e"
[ -e "$T/o1" ] && no "a bad manifest created the output folder"
printf 'patient,label\np1,x\n' >m2.csv
"$B" run m2.csv --out "$T/o1" 2>"$T/e"; [ $? -eq 1 ] || no "no slide column should exit 1"
has "magpie: error: m2.csv:1: no 'slide' column (columns: slide, patient, label, split, mpp, min_tissue)" "$T/e"
printf 'slide\ns/synth_000.tiff\n%s/s/synth_001.tiff\n./s/../s/synth_000.tiff\n' "$T" >m3.csv
"$B" run m3.csv --out "$T/o1" 2>"$T/e"; [ $? -eq 1 ] || no "duplicate slide should exit 1"
has "magpie: error: m3.csv:4: duplicate slide $T/s/synth_000.tiff (also on line 2)" "$T/e"
printf 'slide\n"s/synth_000.tiff\n' >m4.csv
"$B" run m4.csv --out "$T/o1" 2>"$T/e"; [ $? -eq 1 ] || no "unterminated quote should exit 1"
has "magpie: error: m4.csv:2: malformed CSV (unterminated quoted field)" "$T/e"
: >m5.csv
"$B" run m5.csv --out "$T/o1" 2>"$T/e"; [ $? -eq 1 ] || no "empty manifest should exit 1"
"$B" run "$T/nothing.csv" --out "$T/o1" 2>"$T/e"; [ $? -eq 1 ] || no "missing manifest should exit 1"
has "magpie: error: $T/nothing.csv: No such file or directory" "$T/e"
"$B" run "$T/s/*.svs" --out "$T/o1" 2>"$T/e"; [ $? -eq 1 ] || no "empty glob should exit 1"
has "magpie: error: $T/s/*.svs: the pattern matches no file" "$T/e"
[ -e "$T/o1" ] && no "a rejected slide list created the output folder"

# one missing slide among good ones: exit 3, the others done; tile + infer; labels into the dataset
printf 'slide,patient,label,split,min_tissue\n' >man.csv
printf 's/synth_000.tiff,p1,Tumor,train,\n' >>man.csv
printf 's/gone.tiff,p9,Tumor,train,\n' >>man.csv
printf '%s/s/synth_001.tiff,p2,Normal,test,0.2\n' "$T" >>man.csv
printf 'other/synth_001.tiff,p2,"Normal",val,\n' >>man.csv
printf 's/synth_002.tiff,p3,,,\n' >>man.csv
"$B" run man.csv --out "$T/o" --model "$T/m.mpk" -j 2 2>"$T/e"; rc=$?
[ $rc -eq 3 ] || no "one missing slide: exit $rc, want 3 ($(cat "$T/e"))"
has "magpie: warning: man.csv:3: $T/s/gone.tiff: No such file or directory" "$T/e"
[ "$(sqlite3 "$T/o/dataset.db" "SELECT group_concat(name || ':' || coalesce(patient,'-') || ':' || coalesce(label,'-') || ':' || status, ' ') FROM (SELECT * FROM slides ORDER BY path)")" = \
  "synth_001:p2:Normal:done synth_000:p1:Tumor:done synth_001:p2:Normal:done synth_002:p3:-:done" ] ||
    no "slides in the dataset: $(sqlite3 "$T/o/dataset.db" "SELECT name, patient, label, status FROM slides ORDER BY path")"
[ "$(sqlite3 "$T/o/dataset.db" "SELECT group_concat(s.path || '=' || p.split, ' ') FROM (SELECT * FROM splits ORDER BY slide_id) p JOIN slides s ON s.id = p.slide_id")" != "" ] || no "no splits"
[ "$(sqlite3 "$T/o/dataset.db" "SELECT p.split FROM splits p JOIN slides s ON s.id = p.slide_id WHERE s.path = '$T/other/synth_001.tiff'")" = val ] || no "split of other/synth_001"
[ "$(sqlite3 "$T/o/dataset.db" "SELECT count(*) FROM splits p JOIN slides s ON s.id = p.slide_id WHERE s.name = 'synth_002'")" = 0 ] || no "an empty split should leave the slide without one"
[ "$(sqlite3 "$T/o/dataset.db" "SELECT group_concat(id || name, ',') FROM classes ORDER BY id")" = "0Tumor,1Normal" ] || no "classes in manifest order"
# the two synth_001 files share a stem: each gets its own folder, named the same in every run
n1=$(ls "$T/o/heatmaps" | grep -c '^synth_001-[0-9a-f]\{8\}$')
[ "$n1" = 2 ] || no "slides sharing a file name: $(ls "$T/o/heatmaps")"
for d in "$T"/o/heatmaps/*; do
    for f in heatmap.tif probability.tif overlay.png heatmap.geojson prediction.json; do
        [ -s "$d/$f" ] || no "missing $d/$f"
    done
done
[ "$(sqlite3 "$T/o/dataset.db" "SELECT count(DISTINCT slide_fingerprint) FROM predictions")" = 4 ] || no "predictions for the 4 slides"
[ "$(sqlite3 "$T/o/dataset.db" "SELECT count(*) FROM predictions WHERE slide_id IS NULL")" = 0 ] || no "predictions without a slide"
# status.csv: one row per manifest line, in manifest order
[ "$(wc -l <"$T/o/status.csv")" = 6 ] || no "status.csv rows: $(cat "$T/o/status.csv")"
head -1 "$T/o/status.csv" | grep -q '^slide,name,line,status,error,' || no "status.csv header"
grep -q "^\"$T/s/gone.tiff\",\"gone\",3,\"failed\",\"$T/s/gone.tiff: No such file or directory\"" "$T/o/status.csv" || no "failed row: $(cat "$T/o/status.csv")"
[ "$(grep -c ',"done",' "$T/o/status.csv")" = 4 ] || no "four done rows"
python3 - "$T/o/summary.json" <<'EOF' || no "summary.json"
import json, sys
j = json.load(open(sys.argv[1]))
s = j["slides"]
assert (s["total"], s["done"], s["failed"], s["tiled"], s["inferred"]) == (5, 4, 1, 4, 4), s
assert j["steps"] == ["tile", "infer"], j["steps"]
assert j["patches"] > 0 and j["cells_evaluated"] > 0
EOF
# a per-slide min_tissue reached the tiler: the slide's params record it
sqlite3 "$T/o/dataset.db" "SELECT params FROM slides WHERE path = '$T/s/synth_001.tiff'" | grep -q '"min_tissue":0.2' || no "per-slide min_tissue"

# rerun: everything skipped, nothing changes
dump() { sqlite3 "$1" "SELECT s.path, p.gx, p.gy, i.mag, length(i.data), hex(substr(i.data, 1, 64)) FROM patches p JOIN slides s ON s.id = p.slide_id JOIN images i ON i.patch_id = p.id ORDER BY 1, 2, 3, 4"; sqlite3 "$1" "SELECT slide_path, gx, gy, probs FROM predictions ORDER BY 1, 2, 3"; }
dump "$T/o/dataset.db" >"$T/d1"
"$B" run man.csv --out "$T/o" --model "$T/m.mpk" -j 2 --progress=json 2>"$T/e"; rc=$?
[ $rc -eq 3 ] || no "rerun exit $rc"
dump "$T/o/dataset.db" >"$T/d2"
cmp -s "$T/d1" "$T/d2" || no "a rerun changed the dataset"
python3 - "$T/o/summary.json" "$T/e" <<'EOF' || no "rerun summary / json progress"
import json, sys
s = json.load(open(sys.argv[1]))["slides"]
assert (s["tile_skipped"], s["infer_skipped"], s["tiled"], s["inferred"]) == (4, 4, 0, 0), s
ev = [json.loads(l) for l in open(sys.argv[2]) if l.startswith("{")]
slides = [e for e in ev if e.get("event") == "slide"]
assert len(slides) == 5 and sum(e["status"] == "failed" for e in slides) == 1, slides
assert ev[-1]["final"] and ev[-1]["done"] == 5 and ev[-1]["failed"] == 1, ev[-1]
EOF

# the manifest's labels and patients are a label import, as db labels import records a CSV: one
# import naming the manifest (the same one on every rerun), a slide_labels row per slide
lab() { sqlite3 "$T/o/dataset.db" "SELECT group_concat(s.name || ':' || coalesce(l.label, 'NULL') || ':' || coalesce(l.patient, 'NULL') || ':' || i.source || ':' || i.rows, ' ') FROM (SELECT l.*, s.path FROM slide_labels l JOIN slides s ON s.id = l.slide_id ORDER BY s.path) l JOIN slides s ON s.id = l.slide_id JOIN label_imports i ON i.id = l.import_id"; }
want_lab="synth_001:Normal:p2:$T/man.csv:5 synth_000:Tumor:p1:$T/man.csv:5 synth_001:Normal:p2:$T/man.csv:5 synth_002::p3:$T/man.csv:5"
[ "$(lab)" = "$want_lab" ] || no "manifest labels in slide_labels: $(lab)"
[ "$(sqlite3 "$T/o/dataset.db" "SELECT count(*) FROM label_imports")" = 1 ] || no "one import after a rerun: $(sqlite3 "$T/o/dataset.db" "SELECT * FROM label_imports")"
"$B" db "$T/o/dataset.db" labels list >"$T/ll" || no "db labels list"
grep -q "^ *1  csv .* 5  .*  $T/man.csv\$" "$T/ll" || no "labels list shows the manifest's import: $(cat "$T/ll")"
[ "$(grep -c ' import 1$' "$T/ll")" = 3 ] || no "labels list: 3 labelled slides from import 1: $(cat "$T/ll")"
# taken out with db labels remove, then put back by re-tiling (another patch size) from the manifest
"$B" db "$T/o/dataset.db" labels remove --source "$T/man.csv" -q || no "labels remove --source"
[ "$(sqlite3 "$T/o/dataset.db" "SELECT count(*) FROM slides WHERE label IS NOT NULL")" = 0 ] || no "labels removed"
"$B" run man.csv --out "$T/o" --steps tile --size 192 -q 2>"$T/e"; rc=$?
[ $rc -eq 3 ] || no "re-tile exit $rc: $(cat "$T/e")"
[ "$(sqlite3 "$T/o/dataset.db" "SELECT count(*) FROM slides WHERE params LIKE '%\"size\":192%'")" = 4 ] || no "re-tiled at 192 px"
[ "$(lab)" = "$want_lab" ] || no "re-tiling re-applies the manifest labels: $(lab)"
[ "$(sqlite3 "$T/o/dataset.db" "SELECT group_concat(name || ':' || coalesce(label, '-'), ' ') FROM (SELECT * FROM slides ORDER BY path)")" = \
  "synth_001:Normal synth_000:Tumor synth_001:Normal synth_002:-" ] || no "slides.label after re-tiling"

# every slide failing: exit 2
printf 'slide\nnope1.svs\nnope2.svs\n' >allbad.csv
"$B" run allbad.csv --out "$T/o2" -q 2>"$T/e"; rc=$?
[ $rc -eq 2 ] || no "all slides failing: exit $rc, want 2"
[ "$(grep -c ',"failed",' "$T/o2/status.csv")" = 2 ] || no "all failed rows"

# a folder and a glob give the same slides
"$B" run "$T/s" --out "$T/o3" -q || no "run over a folder"
"$B" run "$T/s/synth_00*.tiff" --out "$T/o4" -q || no "run over a glob"
[ "$(cut -d, -f1-4 "$T/o3/status.csv")" = "$(cut -d, -f1-4 "$T/o4/status.csv")" ] || no "folder and glob differ"
[ "$(wc -l <"$T/o3/status.csv")" = 4 ] || no "folder: 3 slides"

exit $fail
