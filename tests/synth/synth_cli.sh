#!/bin/sh
# tests/synth/synth_cli.sh — `magpie synth` as a user runs it: outputs and their layout,
# byte-identical reruns for a seed, CSV quoting, exit codes and one-line errors.
set -u
B=${MAGPIE_BIN:?MAGPIE_BIN not set}
T=$(mktemp -d /tmp/magpie_synth_cli.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
no() { echo "FAIL: $*"; fail=1; }

# expect CODE PATTERN ARGS...: exit code, one stderr line, containing PATTERN
expect() {
    code=$1 pat=$2
    shift 2
    "$B" synth "$@" >"$T/out" 2>"$T/err"
    rc=$?
    [ $rc -eq "$code" ] || no "synth $* exited $rc, expected $code: $(cat "$T/err")"
    [ "$(wc -l <"$T/err")" -eq 1 ] || no "synth $*: expected one error line, got: $(cat "$T/err")"
    grep -q -- "$pat" "$T/err" || no "synth $*: error lacks '$pat': $(cat "$T/err")"
}

"$B" synth --help | grep -q '^usage: magpie synth OUTDIR' || no "--help"
expect 1 "missing OUTDIR"
expect 1 "\-\-mpp 0" "$T/x" --mpp 0
expect 1 "\-\-mpp abc" "$T/x" --mpp abc
expect 1 "\-\-slides 0" "$T/x" --slides 0
expect 1 "\-\-width 10" "$T/x" --width 10
expect 1 "unknown type 'bone'" "$T/x" --classes tumor,bone
expect 1 "at least 2" "$T/x" --classes tumor
expect 1 "\-\-nuisance wild" "$T/x" --nuisance wild
expect 1 "\-\-mix 2" "$T/x" --mix 2
expect 1 "\-\-tile 100" "$T/x" --tile 100
expect 1 "more patients than slides" "$T/x" --slides 2 --patients 3
expect 1 "\-\-frobnicate" "$T/x" --frobnicate
expect 1 "unexpected argument" "$T/x" "$T/y"
[ ! -e "$T/x" ] || no "a usage error created OUTDIR"
# unwritable OUTDIR (a path below a regular file): failure, exit 2, the path named
touch "$T/file"
expect 2 "$T/file/out" "$T/file/out" --slides 1 --width 256 --height 256 --quiet

small="--slides 3 --patients 2 --width 1300 --height 1000 --mpp 2 --seed 7 --region-size 250 --quiet"
"$B" synth "$T/a" $small || no "run a"
"$B" synth "$T/b" $small --jobs 1 || no "run b" # one libvips thread: same bytes as two
for f in slides.csv synth.json synth_000.tiff synth_000_mask.png synth_000_artifacts.png synth_000.geojson synth_000.json \
    synth_002.tiff; do
    [ -s "$T/a/$f" ] || no "missing $f"
done
for f in "$T"/a/*; do
    cmp -s "$f" "$T/b/$(basename "$f")" || no "not deterministic: $(basename "$f")"
done
"$B" synth "$T/c" --slides 1 --width 1300 --height 1000 --mpp 2 --seed 8 -q > "$T/c.out" 2>&1 || no "run c"
[ -s "$T/c.out" ] && no "-q still printed: $(head -c 200 "$T/c.out")"
cmp -s "$T/a/synth_000.tiff" "$T/c/synth_000.tiff" && no "seed 8 gave the same slide as seed 7"
ls "$T/a" | grep -q 'tmp' && no "temporary files left behind"

# masks describe themselves (PNG text chunks): downsample 4 at 2 µm/px is 8 µm per mask pixel
grep -aq 'magpie:downsample' "$T/a/synth_000_mask.png" || no "mask PNG lacks its downsample"
grep -aq '0=background;1=Lymphocyte;2=Tumor;3=Stroma' "$T/a/synth_000_mask.png" || no "mask PNG lacks class names"
grep -q '"downsample": 4' "$T/a/synth_000.json" || no "sidecar downsample"

# CSV: header, one row per slide, 2 patients, labels among the class names
head -1 "$T/a/slides.csv" | grep -qx 'slide,patient,label' || no "CSV header: $(head -1 "$T/a/slides.csv")"
[ "$(wc -l <"$T/a/slides.csv")" -eq 4 ] || no "CSV rows: $(cat "$T/a/slides.csv")"
[ "$(tail -n +2 "$T/a/slides.csv" | cut -d, -f2 | sort -u | wc -l)" -eq 2 ] || no "CSV patients"
tail -n +2 "$T/a/slides.csv" | cut -d, -f3 | grep -vqxE 'Lymphocyte|Tumor|Stroma' && no "CSV labels"
grep -q '^synth_000,synth_p000,' "$T/a/slides.csv" || no "CSV first row: $(cat "$T/a/slides.csv")"

# a patient's slides share their dominant class: with --purity 1 every slide is that class alone
"$B" synth "$T/p" --slides 4 --patients 2 --width 600 --height 500 --mpp 4 --purity 1 --quiet || no "run p"
l0=$(grep '^synth_000,' "$T/p/slides.csv" | cut -d, -f3) l2=$(grep '^synth_002,' "$T/p/slides.csv" | cut -d, -f3)
l1=$(grep '^synth_001,' "$T/p/slides.csv" | cut -d, -f3) l3=$(grep '^synth_003,' "$T/p/slides.csv" | cut -d, -f3)
[ -n "$l0" ] && [ "$l0" = "$l2" ] && [ "$l1" = "$l3" ] && [ "$l0" != "$l1" ] || no "patient labels: $(cat "$T/p/slides.csv")"
grep -q '"tissue_share": 1' "$T/p/synth_000.json" || no "purity 1 sidecar: $(grep -A1 tissue_share "$T/p/synth_000.json")"

# names that need quoting are quoted (RFC 4180), and appear in the GeoJSON
"$B" synth "$T/q" --slides 1 --width 800 --height 600 --mpp 2 --classes 'tumor:Tumor "A",stroma:Stroma B' \
    --purity 1 --quiet || no "run q"
grep -q '^synth_000,synth_p000,"Tumor ""A"""$\|^synth_000,synth_p000,Stroma B$' "$T/q/slides.csv" ||
    no "CSV quoting: $(cat "$T/q/slides.csv")"
grep -q '"objectType":"annotation"' "$T/q/synth_000.geojson" || no "GeoJSON objectType"

# the resolution tags give the MPP; OpenSlide opens it as generic-tiff
if command -v tiffinfo >/dev/null; then
    tiffinfo "$T/a/synth_000.tiff" 2>/dev/null | grep -q 'Resolution: 5000, 5000 pixels/cm' ||
        no "tiffinfo resolution: $(tiffinfo "$T/a/synth_000.tiff" 2>&1 | grep Resolution | head -1)"
fi
if command -v openslide-show-properties >/dev/null; then
    openslide-show-properties "$T/a/synth_000.tiff" | grep -q "openslide.vendor: 'generic-tiff'" || no "openslide vendor"
fi
exit $fail
