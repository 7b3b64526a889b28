#!/bin/sh
# magpie view's coarse levels: a single-level (flat) TIFF served with a lowered read limit
# (MAGPIE_VIEW_MAX_READ), so its coarse Deep Zoom levels come from the thumbnail and its fine
# ones from reads (test_view_coarse); a bad limit is refused.
set -u
T=$(mktemp -d /tmp/mp_view_coarse.XXXXXX)
PIDS=""
trap 'for p in $PIDS; do kill "$p" 2>/dev/null; done; rm -rf "$T"' EXIT
B="$MAGPIE_BIN"
fail=0
no() { echo "FAIL: $*"; fail=1; }
. "$MAGPIE_SRC/tests/view/serve.sh" # serve LOG ARGS...: sets PORT, adds to PIDS
# 3001 x 2003: the thumbnail's pixels do not line up with the tiles' (the harder case)
"$B" synth "$T/s" --slides 1 --width 3001 --height 2003 --mpp 0.5 --seed 4 -q || { echo "synth failed"; exit 1; }
vips tiffsave "$T/s/synth_000.tiff" "$T/flat.tif" --tile --tile-width 256 --tile-height 256 --compression jpeg --Q 90 ||
    { echo "vips tiffsave failed"; exit 1; }

MAGPIE_VIEW_MAX_READ=8 "$B" view "$T/flat.tif" --port 0 2>"$T/e" >/dev/null; [ $? -eq 2 ] || no "MAGPIE_VIEW_MAX_READ=8 should exit 2"
grep -q "^magpie: error: MAGPIE_VIEW_MAX_READ=8: wants a whole number from 16 to 4096" "$T/e" || no "bad limit: $(cat "$T/e")"

MAGPIE_VIEW_MAX_READ=600 serve "$T/log" "$T/flat.tif" || exit 1
"$VIEW_COARSE" "$PORT" 0 "$T/flat.tif" 600 || no "coarse tiles"
exit $fail
