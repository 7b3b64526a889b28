#!/bin/sh
# The README's main job on a small default: synth → tile → labels → split → check, and a rerun
# that resumes (skips the finished slides) and leaves the same dataset.
set -u
T=$(mktemp -d /tmp/mp_demo_XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
"$MAGPIE_BIN" demo "$T/d" --slides 3 --width 4096 --height 3072 > "$T/out" 2> "$T/err" || { echo "FAIL: demo exit $?"; cat "$T/err"; exit 1; }
grep -q "slides    3 total: 3 done, 0 failed" "$T/out" || { echo "FAIL: summary"; fail=1; }
grep -q "blobs decoded: ok" "$T/out" || { echo "FAIL: check"; fail=1; }
grep -q "classes   3 (" "$T/out" || { echo "FAIL: classes imported"; fail=1; }
n1=$(sqlite3 "$T/d/dataset.db" "SELECT count(*) FROM patches")
[ "$n1" -gt 0 ] || { echo "FAIL: no patches"; fail=1; }
h1=$(sqlite3 "$T/d/dataset.db" "SELECT group_concat(x0 || ',' || y0 || ':' || length(data), ';') FROM patches p JOIN images i ON i.patch_id = p.id ORDER BY p.id")
"$MAGPIE_BIN" demo "$T/d" --slides 3 --width 4096 --height 3072 > "$T/out2" 2> "$T/err2" || { echo "FAIL: rerun"; cat "$T/err2"; fail=1; }
h2=$(sqlite3 "$T/d/dataset.db" "SELECT group_concat(x0 || ',' || y0 || ':' || length(data), ';') FROM patches p JOIN images i ON i.patch_id = p.id ORDER BY p.id")
[ "$h1" = "$h2" ] || { echo "FAIL: rerun changed the dataset"; fail=1; }
exit $fail
