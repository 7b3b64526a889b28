#!/bin/sh
# tests/faults/faults_db.sh FAULTSHIM — faults around the dataset:
#  1. disk full (faultshim: ENOSPC after N bytes of the dataset's files) while creating a dataset
#     and while adding a slide to one: a one-line error naming the dataset, exit 2; a dataset that
#     could not be created is not left behind; an existing one opens and passes `magpie db check`,
#     and a rerun with space gives the same dataset as a run that never failed;
#  2. the dataset locked by another process's open write transaction: a bounded wait, then a
#     one-line error naming the dataset; nothing changed; fine once the holder is gone.
set -u
SHIM=$1
M="$MAGPIE_BIN"
T=$(mktemp -d /tmp/mp_faultsdb.XXXXXX)
holder=""
trap '[ -n "$holder" ] && kill $holder 2>/dev/null; rm -rf "$T"' EXIT
fail=0
no() { echo "FAIL: $*"; fail=1; }
# The sanitizer runtime must come first among the libraries; the shim goes before it, harmlessly.
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:verify_asan_link_order=0"

# 1. disk full while tiling: creating the dataset, then adding a second slide to it at several
#     points of the dataset's writes
"$M" synth "$T/s" --slides 2 --width 2048 --height 2048 --mpp 0.5 --seed 4 -q || { echo "FAIL: synth"; exit 1; }
s0="$T/s/synth_000.tiff" s1="$T/s/synth_001.tiff"
"$M" tile "$T/ref.db" "$s0" "$s1" -q -j 2 || no "tile reference run"
MP_FAULT=enospc MP_FAULT_PATH=new.db MP_FAULT_BYTES=2000 LD_PRELOAD="$SHIM" "$M" tile "$T/new.db" "$s0" -q 2>"$T/err"; rc=$?
[ $rc -eq 2 ] || no "tile, disk full creating the dataset: exit $rc, want 2"
grep -q "^magpie: error: $T/new.db: .*disk full" "$T/err" || no "tile, disk full creating the dataset: message: $(cat "$T/err")"
[ -e "$T/new.db" ] && no "tile, disk full creating the dataset left a half-created one behind"
full_runs=1
for bytes in 0 5000 20000 50000; do
    db="$T/full$bytes.db"
    "$M" tile "$db" "$s0" -q -j 2 || no "tile $s0 into $db"
    MP_FAULT=enospc MP_FAULT_PATH="full$bytes.db" MP_FAULT_BYTES=$bytes LD_PRELOAD="$SHIM" \
        "$M" tile "$db" "$s1" -q -j 2 2>"$T/err"; rc=$?
    full_runs=$((full_runs + 1))
    [ $rc -eq 2 ] || no "tile, disk full after $bytes bytes: exit $rc, want 2 ($(cat "$T/err"))"
    grep -q "^magpie: error: .*full$bytes.db.*disk full" "$T/err" || no "tile, disk full after $bytes bytes: message: $(cat "$T/err")"
    # The slide being added stays 'tiling' (marking it failed would need the disk): db check
    # may name it as interrupted, resumable; anything else it finds is damage.
    "$M" db "$db" check >"$T/chk" 2>&1 || {
        grep "^  " "$T/chk" | grep -v "^  interrupted slide: slide [0-9]* (synth_001) was interrupted while tiling" >"$T/chk2"
        [ -s "$T/chk2" ] && no "tile, disk full after $bytes bytes: db check: $(cat "$T/chk")"
    }
    "$M" tile "$db" "$s0" "$s1" -q -j 2 || no "tile rerun after disk full ($bytes) failed"
    for q in "SELECT count(*) FROM patches" "SELECT count(*) FROM images" "SELECT group_concat(name || ':' || status || ':' || n_patches) FROM slides ORDER BY name"; do
        [ "$(sqlite3 "$db" "$q")" = "$(sqlite3 "$T/ref.db" "$q")" ] || no "tile, disk full after $bytes bytes then rerun: '$q' differs"
    done
done

# 2. another process holds a write transaction on the dataset
python3 -c "
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute('BEGIN IMMEDIATE')
c.execute(\"INSERT OR REPLACE INTO meta VALUES ('holder', 'x')\")
open(sys.argv[2], 'w').close()
time.sleep(300)" "$T/ref.db" "$T/held" &
holder=$!
i=0
while [ ! -e "$T/held" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -e "$T/held" ] || no "lock holder did not start"
printf 'slide,label\nsynth_000,Tumor\n' >"$T/l.csv"
before=$(sqlite3 "$T/ref.db" "SELECT count(*) FROM classes")
timeout -k 5 120 "$M" db "$T/ref.db" labels import "$T/l.csv" >/dev/null 2>"$T/err1" &
p1=$!
"$M" synth "$T/s2" --slides 1 --width 1024 --height 1024 --mpp 0.5 --seed 9 -q
timeout -k 5 120 "$M" tile "$T/ref.db" "$T/s2/synth_000.tiff" -q 2>"$T/err2"; rc2=$?
wait $p1; rc1=$?
for k in 1 2; do
    eval rc=\$rc$k
    [ "$rc" -eq 2 ] || no "locked dataset, command $k: exit $rc, want 2 after a bounded wait ($(cat "$T/err$k"))"
    grep -q "^magpie: error: $T/ref.db: .*locked by another process" "$T/err$k" || no "locked dataset, command $k: message: $(cat "$T/err$k")"
done
kill $holder 2>/dev/null
wait $holder 2>/dev/null
holder=""
[ "$(sqlite3 "$T/ref.db" "SELECT count(*) FROM classes")" = "$before" ] || no "locked dataset: the import changed it anyway"
[ "$(sqlite3 "$T/ref.db" "SELECT count(*) FROM meta WHERE key = 'holder'")" = 0 ] || no "the holder's transaction survived its death"
"$M" db "$T/ref.db" labels import "$T/l.csv" >/dev/null || no "import once the holder is gone"
"$M" db "$T/ref.db" check >/dev/null || no "db check after the lock"
echo "faults-db: disk full in tile $full_runs times, a held lock: no loss"
exit $fail
