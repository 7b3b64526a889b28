#!/bin/sh
# heatmap.tif opens the same in every reader: libtiff's tools (tiffinfo, tiffdump, tiff2rgba),
# libvips, and, through tests/infer/heatmap_readers.py, OpenSlide (openslide-python), PIL and
# tifffile, which must return the pixels stored in the file at every pyramid level; and
# probability.tif is registered like it. The Python part needs python3-openslide, python3-pil,
# python3-tifffile and python3-numpy (tools/install-deps.sh installs them); it is skipped, with
# the reason printed, only when no python3 on this machine has them.
set -u
T=$(mktemp -d /tmp/mp_heat_readers.XXXXXX)
trap 'rm -rf "$T"' EXIT
B="$MAGPIE_BIN"
fail=0
no() { echo "FAIL: $*"; fail=1; }

# a wide slide so that the heatmap has two pyramid levels (256x48 cells in 128 px tiles)
"$B" synth "$T/s" --slides 1 --width 8192 --height 1536 --mpp 0.5 --seed 3 --quiet || { echo "synth failed"; exit 1; }
for k in 2 3; do
    "$B" model init --out "$T/r$k.mpk" --classes $k --widths 32,32,32,32 >/dev/null &&
    "$B" model export "$T/r$k.mpk" "$T/r$k.safetensors" >/dev/null &&
    "$B" model import "$T/r$k.safetensors" --out "$T/m$k.mpk" --mag 1.25 --size 28 >/dev/null || { echo "model setup failed"; exit 1; }
done
"$B" infer "$T/m3.mpk" "$T/s/synth_000.tiff" --out "$T/o3" --stride 2 -q || no "infer (3 classes)"
"$B" infer "$T/m2.mpk" "$T/s/synth_000.tiff" --out "$T/o2" --stride 2 --float32 -q || no "infer (2 classes, float32)"

PY=""
for p in /usr/bin/python3 python3; do
    if "$p" -c "import openslide, PIL, tifffile, numpy" 2>/dev/null; then PY=$p; break; fi
done
[ -n "$PY" ] || echo "SKIP part: no python3 with openslide, PIL, tifffile and numpy (tools/install-deps.sh installs them)"

for o in o3 o2; do
    d="$T/$o/synth_000"
    h="$d/heatmap.tif"
    tiffinfo "$h" >"$T/info" 2>&1 || no "$o: tiffinfo failed: $(head -3 "$T/info")"
    grep -q "Photometric Interpretation: RGB color" "$T/info" || no "$o: heatmap.tif is not RGB"
    grep -q "Extra Samples: 1<unassoc-alpha>" "$T/info" || no "$o: heatmap.tif alpha not declared"
    [ "$(grep -c "TIFF Directory" "$T/info")" -eq 2 ] || no "$o: heatmap.tif should have 2 levels"
    grep -iq "warning\|error" "$T/info" && no "$o: tiffinfo complains: $(grep -i "warning\|error" "$T/info" | head -2)"
    # the same registration tags, level by level, in both files
    tiffdump "$h" | grep -E "^(XResolution|YResolution|XPosition|YPosition|ResolutionUnit) " >"$T/tags.h"
    tiffdump "$d/probability.tif" | grep -E "^(XResolution|YResolution|XPosition|YPosition|ResolutionUnit) " >"$T/tags.p"
    [ -s "$T/tags.h" ] && cmp -s "$T/tags.h" "$T/tags.p" || no "$o: registration tags differ: $(cat "$T/tags.h" "$T/tags.p")"
    tiffdump "$h" | grep -q "^ExtraSamples (338) SHORT (3) 1<2>" || no "$o: tiffdump ExtraSamples"
    # libtiff's RGBA reader and libvips' reader agree pixel for pixel on level 0
    tiff2rgba -c none "$h" "$T/$o.t2r.tif" || no "$o: tiff2rgba failed"
    vips subtract "$h" "$T/$o.t2r.tif" "$T/diff.v" && vips abs "$T/diff.v" "$T/adiff.v" &&
        [ "$(vips max "$T/adiff.v" | awk '{print ($1 == 0)}')" = 1 ] || no "$o: tiff2rgba and libvips read different pixels"
    [ "$(vipsheader -f bands "$h")" = 4 ] || no "$o: libvips sees $(vipsheader -f bands "$h") bands in heatmap.tif"
    [ -n "$PY" ] && { "$PY" "$MAGPIE_SRC/tests/infer/heatmap_readers.py" "$d" "$T/$o.t2r.tif" || no "$o: Python readers"; }
done
[ "$(vipsheader -f bands "$T/o3/synth_000/probability.tif")" = 3 ] || no "probability.tif: libvips bands"
vipsheader "$T/o2/synth_000/probability.tif" | grep -q " float, 2 bands," || no "--float32 probability.tif: libvips format"
[ $fail -eq 0 ] && echo "heatmap readers: all checks passed"
exit $fail
