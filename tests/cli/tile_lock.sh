#!/bin/sh
# One `magpie tile` per dataset: while another process holds DB.tile-lock, tile refuses with one
# line naming the dataset (exit 2) and writes nothing; once the holder is gone (however it ended),
# tiling proceeds with no clean-up. The lock belongs to the dataset file, not to the name it was
# given by: through a symlink it is the same lock. `db check` reports a slide whose tiler holds
# the lock as in progress (exit 0), and the same state without a holder as interrupted (exit 2).
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

# through a symlink (to the dataset, and to its directory) the lock is the same one
ln -s "$T/d.db" "$T/link.db"
mkdir "$T/sub"; ln -s "$T/sub" "$T/subl"
flock -o "$T/d.db.tile-lock" sleep 30 >/dev/null 2>&1 &
holder=$!
sleep 0.5
"$M" tile "$T/link.db" "$T/s/synth_000.tiff" --min-tissue 0 -q 2> "$T/err"; rc=$?
[ $rc -eq 2 ] || no "locked dataset through a symlink: exit $rc, expected 2"
grep -qx "magpie: error: $T/link.db: another magpie tile is writing to this dataset ($T/d.db.tile-lock is locked); wait for it, or give each process its own dataset" "$T/err" \
    || no "symlink lock message: $(cat "$T/err")"
ln -s "$T/sub/new.db" "$T/dangling.db" # a dataset not created yet, named through a symlink
flock -o "$T/sub/new.db.tile-lock" sleep 30 >/dev/null 2>&1 &
holder2=$!
sleep 0.5
"$M" tile "$T/dangling.db" "$T/s/synth_000.tiff" -q 2>/dev/null; rc=$?
[ $rc -eq 2 ] || no "locked new dataset through a dangling symlink: exit $rc, expected 2"
"$M" tile "$T/subl/new.db" "$T/s/synth_000.tiff" -q 2>/dev/null; rc=$?
[ $rc -eq 2 ] || no "locked new dataset through a symlinked directory: exit $rc, expected 2"
[ -e "$T/sub/new.db" ] && no "a locked new dataset was created anyway"
pkill -P "$holder2" 2>/dev/null; kill "$holder2" 2>/dev/null; wait "$holder2" 2>/dev/null

# db check: a slide left 'tiling' while a tiler holds the lock is in progress, not damage
MAGPIE_TILER_KILL=after-start "$M" tile "$T/c.db" "$T/s/synth_000.tiff" -q 2>/dev/null
[ "$(sqlite3 "$T/c.db" "SELECT status FROM slides")" = tiling ] || no "kill after-start did not leave a tiling slide"
flock -o "$T/c.db.tile-lock" sleep 30 >/dev/null 2>&1 &
holder3=$!
sleep 0.5
"$M" db "$T/c.db" check --no-decode > "$T/out" 2> "$T/err"; rc=$?
[ $rc -eq 0 ] || no "db check during a tile: exit $rc, expected 0: $(cat "$T/out" "$T/err")"
grep -qx "  in progress: slide 1 (synth_000) is being tiled now (a magpie tile holds the lock)" "$T/out" \
    || no "db check in-progress line: $(cat "$T/out")"
grep -q "1 slide being tiled now: ok$" "$T/out" || no "db check summary: $(cat "$T/out")"
ln -s "$T/c.db" "$T/clink.db"
"$M" db "$T/clink.db" check --no-decode >/dev/null 2>&1; rc=$?
[ $rc -eq 0 ] || no "db check through a symlink during a tile: exit $rc, expected 0"
pkill -P "$holder3" 2>/dev/null; kill "$holder3" 2>/dev/null; wait "$holder3" 2>/dev/null
pkill -P "$holder" 2>/dev/null; kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null
"$M" db "$T/c.db" check --no-decode > "$T/out" 2>/dev/null; rc=$?
[ $rc -eq 2 ] || no "db check of an interrupted tile: exit $rc, expected 2"
grep -q "interrupted slide: slide 1 (synth_000) was interrupted while tiling" "$T/out" || no "interrupted line: $(cat "$T/out")"
# Two real tilers on one dataset through another name: a symlink, then a hard link from another
# folder (its own DB.tile-lock, so only the lock on the dataset file itself can stop it). The
# first is stopped (SIGSTOP) once its slide is in the dataset, so it holds its locks for as long
# as the second takes; the second must be refused with the lock message, never run into the
# first's rows (UNIQUE constraint). Then the first finishes, and the second, rerun, skips.
"$M" synth "$T/big" --slides 1 --width 6144 --height 6144 --mpp 0.5 --seed 5 -q || { echo "FAIL: synth big"; exit 1; }
mkdir "$T/other"
for how in symlink hardlink; do
    db="$T/two-$how.db"
    rm -f "$T/err1" "$T/err2"
    "$M" tile "$db" "$T/big/synth_000.tiff" --min-tissue 0 --mags 20 -q 2> "$T/err1" &
    first=$!
    i=0
    st=
    while [ $i -lt 1000 ] && [ "$st" != pending ] && [ "$st" != tiling ]; do
        sleep 0.02; i=$((i + 1)); st=$(sqlite3 "$db" "SELECT status FROM slides" 2>/dev/null)
    done
    kill -STOP $first
    st=$(sqlite3 "$db" "SELECT status FROM slides")
    [ "$st" = pending ] || [ "$st" = tiling ] || no "$how: the first tiler was not caught at work (slide: '$st')"
    if [ $how = symlink ]; then ln -s "$db" "$T/other/link.db"; other="$T/other/link.db"
    else ln "$db" "$T/other/hard.db"; other="$T/other/hard.db"; fi
    "$M" tile "$other" "$T/big/synth_000.tiff" --min-tissue 0 --mags 20 -q 2> "$T/err2"; rc=$?
    [ $rc -eq 2 ] || no "$how: the second tiler: exit $rc, expected 2: $(cat "$T/err2")"
    grep -q "^magpie: error: $other: another magpie tile is writing to this dataset (.* is locked.*); wait for it, or give each process its own dataset$" "$T/err2" \
        || no "$how: the second tiler's message: $(cat "$T/err2")"
    [ "$(wc -l < "$T/err2")" -eq 1 ] || no "$how: more than one line: $(cat "$T/err2")"
    grep -qi "unique" "$T/err1" "$T/err2" && no "$how: UNIQUE constraint: $(cat "$T/err1" "$T/err2")"
    # db check through the symlink sees the first tiler's slide as in progress (through a hard
    # link SQLite reads another name's -wal: nothing of the live tile, see RELIABILITY.md)
    if [ $how = symlink ]; then
        "$M" db "$other" check --no-decode > "$T/out" 2>&1; rc=$?
        [ $rc -eq 0 ] || no "$how: db check through the other name during the tile: exit $rc: $(cat "$T/out")"
        [ "$st" = pending ] || grep -q "is being tiled now" "$T/out" || no "$how: db check did not see the tile in progress: $(cat "$T/out")"
    fi
    kill -CONT $first
    wait $first; rc=$?
    [ $rc -eq 0 ] || no "$how: the first tiler: exit $rc: $(cat "$T/err1")"
    "$M" tile "$other" "$T/big/synth_000.tiff" --min-tissue 0 --mags 20 -q 2> "$T/err2"; rc=$?
    [ $rc -eq 0 ] || no "$how: the second tiler after the first: exit $rc: $(cat "$T/err2")"
    [ "$(sqlite3 "$db" "SELECT count(*) || ' ' || min(status) FROM slides")" = "1 done" ] || no "$how: slides: $(sqlite3 "$db" "SELECT id, status FROM slides")"
    "$M" db "$db" check --no-decode >/dev/null 2>&1 || no "$how: db check after both"
done
exit $fail
