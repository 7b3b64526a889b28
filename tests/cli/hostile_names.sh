#!/bin/sh
# Hostile slide names through the binary: output names made from slide names never leave --out
# ("...svs" has the stem ".."), and file names holding a newline or a terminal escape are
# printed escaped, so every error stays one line.
set -u
T=$(mktemp -d /tmp/mp_hostile_XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
no() { echo "FAIL: $*"; fail=1; }
B="$MAGPIE_BIN"
"$B" synth "$T/s" --slides 1 --width 2048 --height 1536 --mpp 0.5 -q || { echo "FAIL: synth"; exit 1; }
"$B" model init --out "$T/r.mpk" --classes 2 --widths 32,32,32,32 >/dev/null &&
"$B" model export "$T/r.mpk" "$T/r.safetensors" >/dev/null &&
"$B" model import "$T/r.safetensors" --out "$T/m.mpk" --mag 1.25 --size 28 >/dev/null || { echo "FAIL: model setup"; exit 1; }

# infer: "...svs" -> "__", "..svs" -> "_", both inside --out; nothing beside --out
mkdir -p "$T/in" "$T/out"
cp "$T/s/synth_000.tiff" "$T/in/...svs"
cp "$T/s/synth_000.tiff" "$T/in/..svs"
"$B" infer "$T/m.mpk" "$T/in/...svs" "$T/in/..svs" --out "$T/out/o" -q; rc=$?
[ $rc -eq 0 ] || no "infer of dotted names: exit $rc"
[ -s "$T/out/o/__/heatmap.tif" ] || no "'...svs' outputs not in --out/__"
[ -s "$T/out/o/_/heatmap.tif" ] || no "'..svs' outputs not in --out/_"
[ "$(ls "$T/out")" = "o" ] || no "files written beside --out: $(ls "$T/out")"
[ -e "$T/out/o/heatmap.tif" ] && no "'..svs' wrote into --out itself"

# one-line errors for names with a newline and an escape character
nl="$T/in/bad
name.svs"
esc="$T/in/$(printf 'e\033[31mred').svs"
echo "not a slide" >"$nl"
echo "not a slide" >"$esc"
"$B" tile "$T/d.db" "$nl" "$esc" "$T/s/synth_000.tiff" -q 2>"$T/e"; rc=$?
[ $rc -eq 3 ] || no "tile with bad names: exit $rc, want 3"
[ "$(wc -l <"$T/e")" -eq 2 ] || no "one line per bad slide: $(cat "$T/e")"
grep -qxF "magpie: error: $T/in/bad\\nname.svs: not a slide OpenSlide can read (unrecognised format)" "$T/e" \
    || no "newline not escaped: $(cat "$T/e")"
grep -qxF "magpie: error: $T/in/e\\x1b[31mred.svs: not a slide OpenSlide can read (unrecognised format)" "$T/e" \
    || no "escape not escaped: $(cat "$T/e")"
exit $fail
