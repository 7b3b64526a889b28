#!/bin/sh
# magpie infer through the binary: exact one-line errors and exit codes for bad checkpoints,
# bad slides and unwritable outputs; one bad slide among good ones gives exit 3 with the good
# ones done; reruns skip; --progress=json lines; then e2e on the readable real slides in
# $MAGPIE_SHARED_DATA/slides (that part is skipped with a message when they are absent).
set -u
T=$(mktemp -d /tmp/mp_infer_cli.XXXXXX)
trap 'rm -rf "$T"' EXIT
B="$MAGPIE_BIN"
fail=0
no() { echo "FAIL: $*"; fail=1; }
has() { grep -qxF "$1" "$2" || no "want line: $1 -- got: $(cat "$2")"; }

"$B" synth "$T/s" --slides 2 --width 4096 --height 3072 --mpp 0.5 --quiet || { echo "synth failed"; exit 1; }
s0="$T/s/synth_000.tiff"; s1="$T/s/synth_001.tiff"
"$B" model init --out "$T/r.mpk" --classes 3 --widths 32,32,32,32 >/dev/null &&
"$B" model export "$T/r.mpk" "$T/r.safetensors" >/dev/null &&
"$B" model import "$T/r.safetensors" --out "$T/m.mpk" --mag 1.25 --size 28 --mean 0,0,0 --std 1,1,1 >/dev/null || { echo "model setup failed"; exit 1; }

# --help and usage
"$B" infer --help | grep -q "usage: magpie infer CKPT SLIDE... --out DIR" || no "--help"
"$B" infer "$T/m.mpk" "$s0" >/dev/null 2>"$T/e"; [ $? -eq 1 ] || no "missing --out should exit 1"
"$B" infer "$T/m.mpk" --out "$T/o" >/dev/null 2>&1; [ $? -eq 1 ] || no "missing slide should exit 1"
"$B" infer "$T/m.mpk" "$s0" --out "$T/o" --stride 0 >/dev/null 2>&1; [ $? -eq 1 ] || no "--stride 0 should exit 1"
"$B" infer "$T/m.mpk" "$s0" --out "$T/o" --class 3 -q 2>"$T/e"; [ $? -eq 1 ] || no "--class 3 of 3 should exit 1"
has "magpie: error: $T/m.mpk: --class 3 but the checkpoint has 3 classes" "$T/e"

# checkpoints: missing, truncated, without magnification
"$B" infer "$T/none.mpk" "$s0" --out "$T/o" -q 2>"$T/e"; [ $? -eq 2 ] || no "missing ckpt exit"
has "magpie: error: $T/none.mpk: No such file or directory" "$T/e"
head -c 1000 "$T/m.mpk" >"$T/trunc.mpk"
"$B" infer "$T/trunc.mpk" "$s0" --out "$T/o" -q 2>"$T/e"; [ $? -eq 2 ] || no "truncated ckpt exit"
grep -q "^magpie: error: $T/trunc.mpk: truncated" "$T/e" || no "truncated ckpt message: $(cat "$T/e")"
"$B" infer "$T/r.mpk" "$s0" --out "$T/o" -q 2>"$T/e"; [ $? -eq 2 ] || no "ckpt without mag exit"
has "magpie: error: $T/r.mpk: the model card has no mag (a trained model records it; for an imported one use magpie model import --mag M --size PX --mean a,b,c --std a,b,c)" "$T/e"
[ -e "$T/o/synth_000" ] && no "a bad checkpoint wrote outputs"

# checkpoints that are not magpie models, of another architecture, or of another magnification
# than --mag asks (ckpt_edit.py rewrites the model card and its CRC, so the card's checks refuse)
E="$MAGPIE_SRC/tests/infer/ckpt_edit.py"
bad_ckpt() { # CKPT MESSAGE: exit 2, the one line, nothing written
    "$B" infer "$1" "$s0" --out "$T/bc" -q 2>"$T/e"; rc=$?
    [ $rc -eq 2 ] || no "$1: exit $rc, want 2"
    has "magpie: error: $2" "$T/e"
    [ "$(wc -l <"$T/e")" -eq 1 ] || no "$1: one line: $(cat "$T/e")"
    [ -e "$T/bc" ] && no "$1: a refused checkpoint left --out behind"
}
echo "a text file" >"$T/text.mpk"
bad_ckpt "$T/text.mpk" "$T/text.mpk: not a magpie checkpoint (bad magic)"
bad_ckpt "$T/r.safetensors" "$T/r.safetensors: a safetensors file, not a magpie checkpoint (bad magic); convert it with magpie model import FILE --out CKPT --mag M --size PX --mean a,b,c --std a,b,c"
bad_ckpt "$s0" "$s0: not a magpie checkpoint (bad magic)"
bad_ckpt "$T/s" "$T/s: is a directory, not a file"
python3 "$E" "$T/m.mpk" "$T/vit.mpk" '"arch":"resnet"' '"arch":"vitb16"' || no "ckpt_edit arch"
bad_ckpt "$T/vit.mpk" "$T/vit.mpk: architecture 'vitb16' is not one magpie builds (resnet_gn, resnet18, resnet18_bn, resnet)"
python3 "$E" "$T/m.mpk" "$T/wide.mpk" '"arch.widths":"32,32,32,32"' '"arch.widths":"32,32,32,64"' || no "ckpt_edit widths"
bad_ckpt "$T/wide.mpk" "$T/wide.mpk: tensor layers.3.c1.weight has shape [32,32,3,3], the model expects [64,32,3,3]"
python3 "$E" "$T/m.mpk" "$T/gray.mpk" '"arch.in_ch":"3"' '"arch.in_ch":"1"' || no "ckpt_edit in_ch"
bad_ckpt "$T/gray.mpk" "$T/gray.mpk: the network takes 1 input channels, not RGB"
"$B" infer "$T/m.mpk" "$s0" --out "$T/bc" --mag 10 -q 2>"$T/e"; [ $? -eq 2 ] || no "--mag 10 for a 1.25x model: exit"
has "magpie: error: $T/m.mpk: trained for 1.25x patches, not the 10x of --mag" "$T/e"
[ -e "$T/bc" ] && no "--mag mismatch wrote outputs"
"$B" infer "$T/m.mpk" "$s0" --out "$T/o" --mag 0.1 -q 2>/dev/null; [ $? -eq 1 ] || no "--mag 0.1 should exit 1"
# a model finer than the slide: refused per slide (upsampling would invent detail), others go on
python3 "$E" "$T/m.mpk" "$T/m40.mpk" '"mag":"1.25"' '"mag":"40.0"' || no "ckpt_edit mag"
"$B" infer "$T/m40.mpk" "$s0" --out "$T/bc" -q 2>"$T/e"; [ $? -eq 2 ] || no "40x model on a 20x slide: exit"
has "magpie: error: $s0: the slide's 0.5 µm/px is coarser than the model's 0.25 µm/px (40x); upsampling would invent detail" "$T/e"
# two slides with one output name, and a slide's output path taken by a file: those slides
# fail (one line each), the others are done (exit 3)
mkdir -p "$T/d2" "$T/od" && cp "$s0" "$T/d2/synth_000.tiff" && touch "$T/od/synth_001"
"$B" infer "$T/m.mpk" "$s0" "$T/d2/synth_000.tiff" "$s1" --out "$T/od" -q 2>"$T/e"; rc=$?
[ $rc -eq 3 ] || no "name clash / file in the way: exit $rc, want 3"
has "magpie: error: $T/d2/synth_000.tiff: same output name 'synth_000' as $s0; rename one or run them separately" "$T/e"
has "magpie: error: $T/od/synth_001: not a directory" "$T/e"
[ "$(wc -l <"$T/e")" -eq 2 ] || no "clash: one line per failure: $(cat "$T/e")"
[ -s "$T/od/synth_000/prediction.json" ] || no "clash: the first slide was not done"

# the same slide twice: done once, a warning, exit 0
"$B" infer "$T/m.mpk" "$s1" "$s1" --out "$T/tw" 2>"$T/e"; [ $? -eq 0 ] || no "a slide given twice: exit"
has "magpie: warning: $s1: given twice, inferred once" "$T/e"

# output directory unwritable
touch "$T/file"
"$B" infer "$T/m.mpk" "$s0" --out "$T/file/sub" -q 2>"$T/e"; [ $? -eq 2 ] || no "unwritable out exit"
has "magpie: error: $T/file/sub: Not a directory" "$T/e"
"$B" infer "$T/m.mpk" "$s0" --out "$T/file" -q 2>"$T/e"; [ $? -eq 2 ] || no "--out a file: exit"
has "magpie: error: $T/file: not a directory" "$T/e"

# bad slides among good ones: exit 3, every failure one line naming the file, good ones done
echo "not a slide" >"$T/bad.svs"
printf '%0128d' 0 | tr 0 '\0' >"$T/fake.dcm"; printf 'DICM' >>"$T/fake.dcm"; head -c 2000 /dev/zero >>"$T/fake.dcm"
cp "$s1" "$T/nompp.tiff"; tiffset -s 296 1 "$T/nompp.tiff" 2>/dev/null # ResolutionUnit none: no physical size
"$B" infer "$T/m.mpk" "$T/missing.svs" "$s0" "$T/bad.svs" "$T/fake.dcm" "$T/nompp.tiff" --out "$T/o" -q 2>"$T/e"; rc=$?
[ $rc -eq 3 ] || no "mixed run exit $rc, want 3"
has "magpie: error: $T/missing.svs: no such file" "$T/e"
has "magpie: error: $T/bad.svs: not a slide OpenSlide can read (unrecognised format)" "$T/e"
has "magpie: error: $T/fake.dcm: DICOM is not supported by OpenSlide 3.4" "$T/e"
has "magpie: error: $T/nompp.tiff: no usable MPP (no MPP in the file); pass --mpp" "$T/e"
[ "$(wc -l <"$T/e")" -eq 4 ] || no "one line per failure: $(cat "$T/e")"
for f in heatmap.tif probability.tif overlay.png heatmap.geojson prediction.json; do
    [ -s "$T/o/synth_000/$f" ] || no "good slide's $f missing"
done
[ -e "$T/o/bad" ] && no "a failed slide left an output directory with files" 
# --mpp rescues the slide without one
"$B" infer "$T/m.mpk" "$T/nompp.tiff" --out "$T/o" --mpp 0.5 -q || no "--mpp rescue"
grep -q '"source": "--mpp"' "$T/o/nompp/prediction.json" || no "MPP source --mpp recorded"

# overlay.png: the slide picture's longest side is --overlay-size (1600 by default) plus the
# legend panel, and --class picks the class it shows, by index or by name
ow=$(vipsheader -f width "$T/o/synth_000/overlay.png" 2>/dev/null); oh=$(vipsheader -f height "$T/o/synth_000/overlay.png" 2>/dev/null)
[ "${ow:-0}" -gt 1600 ] && [ "${oh:-0}" -gt 1200 ] && [ "$ow" -lt 2400 ] || no "overlay.png size ${ow}x${oh}"
"$B" infer "$T/m.mpk" "$s0" --out "$T/small" --overlay-size 400 -q || no "--overlay-size run"
[ "$(vipsheader -f width "$T/small/synth_000/overlay.png" 2>/dev/null)" -lt 800 ] || no "--overlay-size 400 is not smaller"
"$B" infer "$T/m.mpk" "$s0" --out "$T/o" --overlay-size 10 -q 2>"$T/e"; [ $? -eq 1 ] || no "--overlay-size 10 should exit 1"
"$B" infer "$T/m.mpk" "$s0" --out "$T/c0" --class 0 -q || no "--class 0 run"
"$B" infer "$T/m.mpk" "$s0" --out "$T/cn" --class CLASS0 -q || no "--class by name (any case)"
cmp -s "$T/c0/synth_000/heatmap.tif" "$T/cn/synth_000/heatmap.tif" || no "--class CLASS0 and --class 0 differ"
"$B" infer "$T/m.mpk" "$s0" --out "$T/o" --class tumour -q 2>"$T/e"; [ $? -eq 1 ] || no "--class tumour should exit 1"
has "magpie: error: $T/m.mpk: no class 'tumour' (classes: class0, class1, class2)" "$T/e"
cmp -s "$T/o/synth_000/overlay.png" "$T/c0/synth_000/overlay.png" && no "--class 0 overlay equals the default (last class)"
cmp -s "$T/o/synth_000/probability.tif" "$T/c0/synth_000/probability.tif" || no "--class must not change probability.tif"
cmp -s "$T/o/synth_000/heatmap.tif" "$T/c0/synth_000/heatmap.tif" && no "--class 0 heatmap.tif equals the default (last class)"

# --db: every evaluated patch in the dataset's predictions table, linked to the tiled slide,
# with the checkpoint's fingerprint; a rerun neither duplicates nor skips missing rows
"$B" tile "$T/p.db" "$s0" --mags 1.25 --size 28 -q 2>/dev/null || no "tile for --db"
"$B" infer "$T/m.mpk" "$s0" --out "$T/pd" --db "$T/p.db" -q || no "infer --db"
ev=$(sed -n 's/.*"evaluated": \([0-9]*\).*/\1/p' "$T/pd/synth_000/prediction.json")
ck=$(sed -n 's/.*"checkpoint_hash": "\([^"]*\)".*/\1/p' "$T/pd/synth_000/prediction.json")
q() { sqlite3 "$T/p.db" "$1"; }
[ "${ev:-0}" -gt 0 ] && [ "$(q "SELECT count(*) FROM predictions")" = "$ev" ] || no "--db rows $(q "SELECT count(*) FROM predictions") != evaluated $ev"
[ "$(q "SELECT count(*) FROM predictions WHERE slide_id = (SELECT id FROM slides) AND model_fingerprint = '$ck'")" = "$ev" ] ||
    no "--db rows not linked to the slide / checkpoint"
[ "$(q "SELECT count(*) FROM predictions p WHERE abs((SELECT sum(value) FROM json_each(p.probs)) - 1) > 1e-4
        OR json_array_length(probs) != 3 OR abs(confidence - (SELECT max(value) FROM json_each(p.probs))) > 1e-6")" = 0 ] ||
    no "--db probabilities"
[ "$(q "PRAGMA user_version")" -ge 2 ] || no "--db schema version"
"$B" infer "$T/m.mpk" "$s0" --out "$T/pd" --db "$T/p.db" 2>"$T/e" || no "infer --db rerun"
grep -q "skipped" "$T/e" || no "--db rerun with the rows present should skip"
q "DELETE FROM predictions"
"$B" infer "$T/m.mpk" "$s0" --out "$T/pd" --db "$T/p.db" 2>"$T/e" || no "infer --db after rows deleted"
grep -q "skipped" "$T/e" && no "--db rerun without the rows must not skip"
[ "$(q "SELECT count(*) FROM predictions")" = "$ev" ] || no "--db rows after the rerun"
"$B" infer "$T/m.mpk" "$s0" --out "$T/pd" --db "$T/p.db" --force -q && [ "$(q "SELECT count(*) FROM predictions")" = "$ev" ] ||
    no "--db --force duplicated rows"
"$B" infer "$T/m.mpk" "$s0" --out "$T/pd" --db "$T/file/x.db" -q 2>"$T/e"; [ $? -eq 2 ] || no "--db unwritable exit"
grep -q "^magpie: error: $T/file/x.db: " "$T/e" && [ "$(wc -l <"$T/e")" -eq 1 ] || no "--db unwritable message: $(cat "$T/e")"

# a slide of bare glass: done, but never silently empty
vips black "$T/b.v" 2048 2048 --bands 3 && vips linear "$T/b.v" "$T/w.v" 1 250 --uchar &&
vips tiffsave "$T/w.v" "$T/glass.tif" --tile --pyramid --compression jpeg --xres 2000 --yres 2000 || no "vips blank slide"
"$B" infer "$T/m.mpk" "$T/glass.tif" --out "$T/o" 2>"$T/e"; [ $? -eq 0 ] || no "blank slide exit"
has "magpie: warning: $T/glass.tif: no tissue found by the mask, the heatmap is empty (try --min-tissue 0 or check the slide)" "$T/e"
grep -q '"evaluated": 0' "$T/o/glass/prediction.json" || no "blank slide: 0 evaluated"

# bright-field check without real data: the synthetic slides are bright-field; the same slide
# inverted (black glass, bright tissue: a dark-background slide) is refused for this H&E model,
# one line naming it, exit 3 with the others done; --allow-fluorescence infers it; tile refuses
# it too and records the kind per slide
grep -q '"kind": "brightfield"' "$T/o/synth_000/prediction.json" || no "synthetic slide classed bright-field"
vips invert "$s0" "$T/inv.v" && vips tiffsave "$T/inv.v" "$T/dark.tif" --tile --pyramid --compression jpeg --xres 2000 --yres 2000 ||
    no "vips dark slide"
"$B" infer "$T/m.mpk" "$s1" "$T/dark.tif" --out "$T/fl" -q 2>"$T/e"; rc=$?
[ $rc -eq 3 ] || no "dark slide among good ones: exit $rc, want 3"
has "magpie: error: $T/dark.tif: a fluorescence slide (dark background: commonest brightness 8/255, 66% of it below 64), not bright-field H&E as the model expects; pass --allow-fluorescence to infer it anyway" "$T/e"
[ "$(wc -l <"$T/e")" -eq 1 ] || no "dark slide: one line: $(cat "$T/e")"
[ -s "$T/fl/synth_001/prediction.json" ] || no "the good slide beside the dark one was not done"
[ -e "$T/fl/dark" ] && no "the refused slide left outputs"
"$B" infer "$T/m.mpk" "$T/dark.tif" --out "$T/fl" --allow-fluorescence -q || no "dark slide --allow-fluorescence"
grep -q '"kind": "fluorescence"' "$T/fl/dark/prediction.json" || no "dark slide_kind"
"$B" tile "$T/k.db" "$s1" "$T/dark.tif" --mags 1.25 --size 28 -q 2>"$T/e"; rc=$?
[ $rc -eq 3 ] || no "tile dark slide among good ones: exit $rc, want 3"
has "magpie: error: $T/dark.tif: a fluorescence slide (dark background: commonest brightness 8/255, 66% of it below 64), not bright-field H&E; pass --allow-fluorescence to tile it anyway" "$T/e"
[ "$(sqlite3 "$T/k.db" "SELECT group_concat(name || ':' || status || ':' || kind, ' ') FROM (SELECT * FROM slides ORDER BY name)")" = \
  "dark:failed:fluorescence synth_001:done:brightfield" ] || no "tile kinds: $(sqlite3 "$T/k.db" "SELECT name, status, kind FROM slides")"
"$B" tile "$T/k.db" "$T/dark.tif" --mags 1.25 --size 28 --allow-fluorescence -q || no "tile --allow-fluorescence"
[ "$(sqlite3 "$T/k.db" "SELECT status FROM slides WHERE name = 'dark'")" = done ] || no "dark slide tiled when allowed"

# rerun: skipped and says so; --progress=json gives JSON lines
"$B" infer "$T/m.mpk" "$s0" --out "$T/o" 2>"$T/e"; [ $? -eq 0 ] || no "rerun exit"
grep -q "outputs current, skipped" "$T/e" || no "rerun skip message: $(cat "$T/e")"
"$B" infer "$T/m.mpk" "$s1" --out "$T/o" --progress=json 2>"$T/e" || no "json progress run"
grep -q '^{.*"patches"' "$T/e" || grep -q '^{' "$T/e" || no "no JSON progress lines: $(head -3 "$T/e")"
ls "$T/o"/*/ | grep -q '\.tmp\.' && no "temporary files left"

# crash: killed after the heatmap files and before prediction.json; the rerun redoes the slide,
# clears the temporaries of killed writers and ends complete
MAGPIE_INFER_KILL=before-json "$B" infer "$T/m.mpk" "$s1" --out "$T/k" -q 2>/dev/null; rc=$?
[ $rc -ne 0 ] || no "the kill hook did not kill"
[ -e "$T/k/synth_001/prediction.json" ] && no "killed run left prediction.json"
[ -s "$T/k/synth_001/heatmap.tif" ] || no "killed run: heatmap.tif should be whole already"
touch "$T/k/synth_001/heatmap.tif.tmp.99999" "$T/k/synth_001/prediction.json.tmp.99999"
"$B" infer "$T/m.mpk" "$s1" --out "$T/k" 2>"$T/e" || no "rerun after kill"
grep -q "skipped" "$T/e" && no "rerun after a kill must not skip"
[ -s "$T/k/synth_001/prediction.json" ] || no "rerun after kill: prediction.json"
ls "$T/k/synth_001" | grep -q '\.tmp\.' && no "temporaries of killed writers left"

# e2e on the real slides
S="${MAGPIE_SHARED_DATA:-}/slides"
if [ ! -d "$S" ]; then
    echo "SKIP part: $S absent (real slides not available)"
else
    svs="$S/aperio-jpeg-cmu1-small-region/CMU-1-Small-Region.svs"
    ndpi="$S/hamamatsu-ndpi-dapi/test3-DAPI-2-387.ndpi"
    gtif="$S/generic-tiff-jpeg-cmu1/CMU-1-Small-Region.jpeg.tiff"
    dcm="$S/dicom-wsi-tcga-xk-aaju/small_dicom.dcm"
    "$B" infer "$T/m.mpk" "$svs" "$ndpi" "$dcm" --out "$T/real" --stride 14 -q 2>"$T/e"; rc=$?
    [ $rc -eq 3 ] || no "real mixed exit $rc"
    has "magpie: error: $dcm: DICOM is not supported by OpenSlide 3.4" "$T/e"
    # the DAPI slide is fluorescence: refused for an H&E model, nothing written for it
    has "magpie: error: $ndpi: a fluorescence slide (dark background: commonest brightness 8/255, 77% of it below 64), not bright-field H&E as the model expects; pass --allow-fluorescence to infer it anyway" "$T/e"
    [ "$(wc -l <"$T/e")" -eq 2 ] || no "real mixed: one line per failure: $(cat "$T/e")"
    [ -e "$T/real/test3-DAPI-2-387" ] && no "a refused slide left an output directory"
    grep -q '"source": "openslide.mpp"' "$T/real/CMU-1-Small-Region/prediction.json" || no "svs MPP source"
    grep -q '"kind": "brightfield"' "$T/real/CMU-1-Small-Region/prediction.json" || no "svs slide_kind"
    "$B" infer "$T/m.mpk" "$ndpi" --out "$T/real" --stride 14 --allow-fluorescence 2>"$T/e" || no "ndpi --allow-fluorescence"
    grep -q "$ndpi: fluorescence, [0-9]* of [0-9]* cells evaluated" "$T/e" || no "infer says the kind: $(cat "$T/e")"
    [ -s "$T/real/test3-DAPI-2-387/heatmap.tif" ] || no "ndpi heatmap"
    grep -q '"kind": "fluorescence"' "$T/real/test3-DAPI-2-387/prediction.json" || no "ndpi slide_kind"
    # outputs made with --allow-fluorescence do not let a run without it skip the refusal
    "$B" infer "$T/m.mpk" "$ndpi" --out "$T/real" --stride 14 -q 2>"$T/e"; [ $? -eq 2 ] || no "ndpi rerun without the flag"
    grep -q "a fluorescence slide" "$T/e" || no "ndpi rerun refusal: $(cat "$T/e")"
    # every readable bright-field slide is classed bright-field (no false refusal)
    "$B" infer "$T/m.mpk" "$gtif" "$S/aperio-j2k-tcga-cr-7395/tcga-cr-7395-01a-01-ts1.svs" --out "$T/bf" --mpp 0.499 -q ||
        no "bright-field real slides refused: $(cat "$T/e")"
    [ "$(grep -l '"kind": "brightfield"' "$T/bf"/*/prediction.json | wc -l)" -eq 2 ] || no "bright-field real slides' kind"
    "$B" infer "$T/m.mpk" "$gtif" --out "$T/real" --mpp 0.499 -q || no "generic TIFF with --mpp"
    tiffinfo "$T/real/CMU-1-Small-Region/heatmap.tif" 2>/dev/null | grep -q "Resolution: 89.2857, 89.2857 pixels/cm" || no "svs heatmap resolution (14 px at 8 µm = 112 µm per cell)"
fi
[ $fail -eq 0 ] && echo "infer cli: all checks passed"
exit $fail
