#!/bin/sh
# One `magpie tile` per dataset: while another process holds DB.tile-lock, tile refuses with one
# line naming the dataset (exit 2) and writes nothing; once the holder is gone (however it ended),
# tiling proceeds with no clean-up.
set -u
T=$(mktemp -d /tmp/mp_tilelock_XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
no() { echo "FAIL: $*"; fail=1; }
M="$MAGPIE_BIN"
"$M" synth "$T/s" --slides 1 --width 3072 --height 2048 --mpp 1 --seed 3 -q || { echo "FAIL: synth"; exit 1; }
command -v flock >/dev/null || { echo "FAIL: flock(1) not installed (util-linux, see tools/install-deps.sh)"; exit 1; }
flock -o "$T/d.db.tile-lock" sleep 30 >/dev/null 2>&1 &  # -o: only flock itself holds the lock
holder=$!
sleep 0.5
"$M" tile "$T/d.db" "$T/s/synth_000.tiff" -q 2> "$T/err"; rc=$?
[ $rc -eq 2 ] || no "locked dataset: exit $rc, expected 2"
grep -qx "magpie: error: $T/d.db: another magpie tile is writing to this dataset ($T/d.db.tile-lock is locked); wait for it, or give each process its own dataset" "$T/err" \
    || no "locked dataset message: $(cat "$T/err")"
[ -e "$T/d.db" ] && no "the locked dataset was created anyway"
pkill -P "$holder" 2>/dev/null; kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null  # as if it died
"$M" tile "$T/d.db" "$T/s/synth_000.tiff" --min-tissue 0 -q; rc=$?
[ $rc -eq 0 ] || no "after the holder died: exit $rc"
n=$(sqlite3 "$T/d.db" "SELECT count(*) FROM patches")
[ "$n" -gt 0 ] || no "after the holder died: no patches"
exit $fail
