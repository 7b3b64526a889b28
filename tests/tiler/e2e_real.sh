#!/bin/sh
# End-to-end on the real slides in $MAGPIE_SHARED_DATA/slides through the magpie binary: every
# readable slide tiles (with --mpp where the file has none or a wrong one), the DICOM files fail
# with the DICOM message, a mixed call exits 3, a second run skips, --dry-run writes nothing.
set -u
S="$MAGPIE_SHARED_DATA/slides"
[ -d "$S" ] || { echo "SKIP: $S absent (real slides not available)"; exit 77; }
T=$(mktemp -d /tmp/mp_tiler_e2e.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
no() { echo "FAIL: $*"; fail=1; }
svs="$S/aperio-jpeg-cmu1-small-region/CMU-1-Small-Region.svs"
ndpi="$S/hamamatsu-ndpi-dapi/test3-DAPI-2-387.ndpi"
gtif="$S/generic-tiff-jpeg-cmu1/CMU-1-Small-Region.jpeg.tiff"
j2k="$S/aperio-j2k-tcga-cr-7395/tcga-cr-7395-01a-01-ts1.svs"
dcm1="$S/dicom-wsi-tcga-xk-aaju/small_dicom.dcm"
q() { sqlite3 "$T/a.db" "$1"; }

"$MAGPIE_BIN" tile "$T/a.db" "$svs" "$ndpi" "$gtif" "$j2k" "$dcm1" -q 2>"$T/err"; rc=$?
[ $rc -eq 3 ] || no "mixed call exit $rc, want 3"
grep -qxF "magpie: error: $gtif: no usable MPP (TIFF XResolution gives 0.00499 µm/px, outside 0.05–20); pass --mpp" "$T/err" || no "generic TIFF message: $(cat "$T/err")"
grep -qxF "magpie: error: $j2k: no usable MPP (no MPP in the file); pass --mpp" "$T/err" || no "j2k message"
grep -qxF "magpie: error: $dcm1: DICOM is not supported by OpenSlide 3.4" "$T/err" || no "DICOM message"
for d in "$S"/dicom-wsi-cmu1-small-region/*.dcm; do
    "$MAGPIE_BIN" tile "$T/a.db" "$d" -q 2>"$T/e2"; rc=$?
    [ $rc -eq 2 ] || no "DICOM $d exit $rc, want 2"
    grep -qxF "magpie: error: $d: DICOM is not supported by OpenSlide 3.4" "$T/e2" || no "DICOM message for $d"
done
[ "$(q "SELECT count(*) FROM slides WHERE status='done' AND n_patches > 0 AND kind='brightfield'")" = 1 ] || no "svs done with patches, bright-field"
[ "$(q "SELECT mpp_source FROM slides WHERE name='CMU-1-Small-Region'")" = openslide.mpp ] || no "svs mpp source"
# the files without a usable MPP tile with --mpp, recorded as such
"$MAGPIE_BIN" tile "$T/a.db" "$gtif" "$j2k" --mpp 0.499 -q || no "--mpp rescue"
[ "$(q "SELECT count(*) FROM slides WHERE status='done' AND mpp_source='--mpp' AND n_patches > 0 AND kind='brightfield'")" = 2 ] || no "--mpp slides done, bright-field"
# NDPI fluorescence: refused by default with a one-line reason, recorded as fluorescence; tiled
# with --allow-fluorescence (the dark-background mask finds its tissue); every bright-field
# slide is recorded as such (no false refusal)
grep -qxF "magpie: error: $ndpi: a fluorescence slide (dark background: commonest brightness 8/255, 77% of it below 64), not bright-field H&E; pass --allow-fluorescence to tile it anyway" "$T/err" ||
    no "fluorescence refusal: $(grep DAPI "$T/err")"
[ "$(q "SELECT status || ' ' || kind || ' ' || n_patches FROM slides WHERE name='test3-DAPI-2-387'")" = "failed fluorescence 0" ] ||
    no "refused NDPI row: $(q "SELECT status, kind FROM slides WHERE name='test3-DAPI-2-387'")"
"$MAGPIE_BIN" tile "$T/a.db" "$ndpi" --allow-fluorescence 2>"$T/fl"; rc=$?
[ $rc -eq 0 ] || no "--allow-fluorescence exit $rc"
grep -q "^$ndpi: fluorescence, [0-9]* patches" "$T/fl" || no "tile says the kind per slide: $(cat "$T/fl")"
[ "$(q "SELECT n_patches >= 5 AND kind = 'fluorescence' FROM slides WHERE name='test3-DAPI-2-387'")" = 1 ] || no "fluorescence patches"
"$MAGPIE_BIN" db "$T/a.db" slides | grep -q "test3-DAPI-2-387 .* done *fluorescence " || no "db slides shows the kind: $("$MAGPIE_BIN" db "$T/a.db" slides)"
"$MAGPIE_BIN" db "$T/a.db" slides --json | grep "test3-DAPI" | grep -q '"kind":"fluorescence"' || no "db slides --json has the kind"
# every patch has both magnifications, 224 and 28 px
[ "$(q "SELECT count(*) FROM patches p WHERE (SELECT count(*) FROM images WHERE patch_id=p.id AND ((mag=10 AND width=224) OR (mag=1.25 AND width=28)))<>2")" = 0 ] || no "images per patch"
# second run: skipped, exit 0
"$MAGPIE_BIN" tile "$T/a.db" "$svs" "$ndpi" 2>"$T/err2"; rc=$?
[ $rc -eq 0 ] || no "rerun exit $rc"
grep -q "done and unchanged, skipped" "$T/err2" || no "rerun skip message"
# dry run: prints the plan, creates nothing
"$MAGPIE_BIN" tile "$T/new.db" "$svs" --dry-run >"$T/dry" 2>&1 || no "dry-run exit"
[ -e "$T/new.db" ] && no "dry-run created the dataset"
grep -q "MPP 0.499 x 0.499 µm/px from openslide.mpp" "$T/dry" || no "dry-run MPP line"
grep -q "10x: level 0 (downsample 1, 0.499 µm/px), read 449 px -> 224 px" "$T/dry" || no "dry-run level line"
grep -q "estimate: " "$T/dry" || no "dry-run estimate"
# an override that contradicts the file is applied, with a warning naming both values
"$MAGPIE_BIN" tile "$T/o.db" "$svs" --mpp 0.25 --dry-run >/dev/null 2>"$T/ow" || no "override dry-run"
grep -qxF "magpie: warning: $svs: --mpp 0.25 overrides the file's 0.499 µm/px (openslide.mpp)" "$T/ow" || no "override warning: $(cat "$T/ow")"
# usage errors exit 1
"$MAGPIE_BIN" tile "$T/a.db" >/dev/null 2>&1; [ $? -eq 1 ] || no "missing slide arg should exit 1"
"$MAGPIE_BIN" tile "$T/a.db" "$svs" --mags 10,x >/dev/null 2>&1; [ $? -eq 1 ] || no "bad --mags should exit 1"
"$MAGPIE_BIN" tile "$T/a.db" "$svs" --mpp 0.001 >/dev/null 2>&1; [ $? -eq 1 ] || no "bad --mpp should exit 1"
"$MAGPIE_BIN" tile --help | grep -q "^usage: magpie tile" || no "--help"
# JSON progress lines
"$MAGPIE_BIN" tile "$T/j.db" "$svs" --progress=json 2>"$T/json" || no "json run"
grep -q '^{"task":"CMU-1-Small-Region".*"final":true' "$T/json" || no "json progress: $(head -3 "$T/json")"
[ $fail -eq 0 ] && echo "e2e real slides: ok"
exit $fail
