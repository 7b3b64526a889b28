#!/bin/sh
# tests/faults/faults_merge.sh FAULTSHIM DIFF — `magpie db merge` killed (SIGKILL in the middle of
# a write, faultshim) at points spread over all the bytes it writes, and run out of disk:
#  - into a new OUT: afterwards OUT does not exist, or it is complete;
#  - into an existing OUT: OUT equals itself before the merge, or the finished merge;
# never anything in between (DIFF = tests/db/dataset_diff.py compares datasets table by table),
# and a rerun then gives the merge that was never interrupted.
set -u
SHIM=$1
DIFF=$2
M="$MAGPIE_BIN"
T=$(mktemp -d /tmp/mp_faultsmerge.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
no() { echo "FAIL: $*"; fail=1; }
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:verify_asan_link_order=0"
eq() { python3 "$DIFF" "$1" "$2" >/dev/null 2>&1; }

"$M" synth "$T/s" --slides 4 --width 3072 --height 3072 --mpp 0.5 --seed 5 -q || { echo "FAIL: synth"; exit 1; }
"$M" tile "$T/a.db" "$T/s/synth_000.tiff" "$T/s/synth_001.tiff" -q -j 2 || no "tile a"
"$M" tile "$T/b.db" "$T/s/synth_002.tiff" -q -j 2 || no "tile b"
"$M" tile "$T/c.db" "$T/s/synth_003.tiff" -q -j 2 || no "tile c"
"$M" db "$T/a.db" labels import "$T/s/slides.csv" -q 2>/dev/null
"$M" db merge "$T/ref.db" "$T/a.db" "$T/b.db" "$T/c.db" -q || no "reference merge"
size=$(stat -c %s "$T/ref.db")
# WAL frames, then the checkpoint into the file: about twice the dataset's size is written
kills=0 before=0 after=0
for k in 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17; do
    bytes=$((size * k / 8 + 1000 * k))
    # a new OUT
    rm -rf "$T/n.db"*
    MP_FAULT=kill MP_FAULT_PATH=n.db MP_FAULT_BYTES=$bytes LD_PRELOAD="$SHIM" \
        "$M" db merge "$T/n.db" "$T/a.db" "$T/b.db" "$T/c.db" -q 2>/dev/null; rc=$?
    if [ -e "$T/n.db" ]; then
        eq "$T/ref.db" "$T/n.db" || no "killed after $bytes bytes (exit $rc): a new OUT exists but is not the merge"
        after=$((after + 1))
    else
        [ $rc -ne 0 ] || no "exit 0 without OUT (after $bytes bytes)"
        before=$((before + 1))
    fi
    [ $rc -eq 137 ] || [ $rc -eq 0 ] || no "killed after $bytes bytes: exit $rc"
    [ $rc -eq 137 ] && kills=$((kills + 1))
    "$M" db merge "$T/n.db" "$T/a.db" "$T/b.db" "$T/c.db" -q 2>/dev/null || [ -e "$T/n.db" ] || no "rerun after a kill at $bytes bytes"
    eq "$T/ref.db" "$T/n.db" || no "rerun after a kill at $bytes bytes: not the merge"
    [ -e "$T/n.db.merge-tmp" ] && no "rerun after a kill at $bytes bytes left n.db.merge-tmp"
    # an existing OUT
    rm -rf "$T/e.db"*
    cp "$T/a.db" "$T/e.db"
    MP_FAULT=kill MP_FAULT_PATH=e.db MP_FAULT_BYTES=$bytes LD_PRELOAD="$SHIM" \
        "$M" db merge "$T/e.db" "$T/b.db" "$T/c.db" -q 2>/dev/null; rc=$?
    if eq "$T/a.db" "$T/e.db"; then before=$((before + 1))
    elif eq "$T/ref.db" "$T/e.db"; then after=$((after + 1))
    else no "killed after $bytes bytes (exit $rc): the existing OUT is neither as before nor as after"; fi
    [ $rc -eq 137 ] && kills=$((kills + 1))
    "$M" db "$T/e.db" check >/dev/null 2>&1 || no "db check after a kill at $bytes bytes into an existing OUT"
    if eq "$T/a.db" "$T/e.db"; then
        "$M" db merge "$T/e.db" "$T/b.db" "$T/c.db" -q || no "rerun into the existing OUT after a kill at $bytes bytes"
    fi
    eq "$T/ref.db" "$T/e.db" || no "rerun into the existing OUT after a kill at $bytes bytes: not the merge"
done
[ $kills -ge 20 ] || no "only $kills of 36 runs were killed: the kill points miss the merge's writes"
[ $after -ge 2 ] || no "no run got through (kill points all too early)"
# a full disk: exit 2, one line saying so, OUT untouched
rm -rf "$T/e.db"*
cp "$T/a.db" "$T/e.db"
MP_FAULT=enospc MP_FAULT_PATH=e.db MP_FAULT_BYTES=$((size / 3)) LD_PRELOAD="$SHIM" \
    "$M" db merge "$T/e.db" "$T/b.db" "$T/c.db" -q 2>"$T/err"; rc=$?
[ $rc -eq 2 ] || no "disk full: exit $rc, want 2"
grep -q "^magpie: error: $T/e.db: .*disk full" "$T/err" || no "disk full: message: $(cat "$T/err")"
eq "$T/a.db" "$T/e.db" || no "disk full: the existing OUT changed"
echo "faults-merge: $kills kills ($before left OUT as before, $after as after), a full disk: never in between"
exit $fail
