#!/bin/sh
# Bad slides: tests/faults/badslides.py damages good slides (a magpie synth TIFF always; the real
# Aperio .svs and generic BigTIFF from $MAGPIE_SHARED_DATA when present) in every way it knows,
# plus files that are not slides. Each one is tiled beside a good slide, bounded in time: the
# call exits 3 with a one-line error naming the bad file, or 0 with the file tiled (bad tiles
# recorded); never a crash, a sanitizer report or a hang. The good slide is finished, a call
# with every bad file and the good one last exits 3 with the good one done, and `magpie db
# check` passes on every dataset afterwards.
set -u
M="$MAGPIE_BIN"
T=$(mktemp -d /tmp/mp_badslides.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0 tried=0
no() { echo "FAIL: $*"; fail=1; }
"$M" synth "$T/s" --slides 1 --width 3072 --height 2048 --mpp 0.5 --seed 5 --tile 256 -q || { echo "FAIL: synth"; exit 1; }
good="$T/s/synth_000.tiff"
srcs="synth=$good"
S="$MAGPIE_SHARED_DATA/slides"
if [ -d "$S" ]; then
    srcs="$srcs svs=$S/aperio-jpeg-cmu1-small-region/CMU-1-Small-Region.svs"
    srcs="$srcs gtif=$S/generic-tiff-jpeg-cmu1/CMU-1-Small-Region.jpeg.tiff"
else
    echo "note: $S absent: bad slides from the synthetic slide only"
fi
# shellcheck disable=SC2086
python3 "$MAGPIE_SRC/tests/faults/badslides.py" "$T/bad" $srcs >"$T/list" || { echo "FAIL: badslides.py"; exit 1; }

# One bad file beside the good one: exit 3 + "magpie: error: FILE: ..." or exit 0 + done.
one() { # DB FILE KIND [tile options]
    db=$1 f=$2 kind=$3
    shift 3
    tried=$((tried + 1))
    timeout -k 5 300 "$M" tile "$db" "$f" "$good" -q -j 2 "$@" >"$T/out" 2>"$T/err"; rc=$?
    if grep -Eq "AddressSanitizer|LeakSanitizer|runtime error:|GLib-ERROR|Segmentation" "$T/err"; then
        no "$f ($kind): sanitizer or library abort: $(head -c 400 "$T/err")"
    elif [ $rc -eq 3 ]; then
        grep -q "^magpie: error: $f: " "$T/err" || no "$f ($kind): exit 3 without an error line naming it: $(head -c 300 "$T/err")"
    elif [ $rc -eq 0 ]; then
        st=$(sqlite3 "$db" "SELECT status FROM slides WHERE path = '$f'")
        [ "$st" = done ] || no "$f ($kind): exit 0 but status '$st'"
    elif [ $rc -ge 124 ]; then
        no "$f ($kind): killed, aborted or timed out (exit $rc): $(head -c 300 "$T/err")"
    else
        no "$f ($kind): exit $rc: $(head -c 300 "$T/err")"
    fi
}

for tag in synth svs gtif; do
    grep -q "^$T/bad/$tag-" "$T/list" || continue
    opts=""
    [ $tag = gtif ] && opts="--mpp 0.499" # its TIFF resolution is implausible (SOURCES.md)
    db="$T/$tag.db"
    while IFS="	" read -r f kind; do
        case "$f" in "$T/bad/$tag-"*) ;; *) continue ;; esac
        # shellcheck disable=SC2086
        one "$db" "$f" "$kind" $opts
    done <"$T/list"
    [ "$(sqlite3 "$db" "SELECT status FROM slides WHERE path = '$good'")" = done ] || no "$tag: the good slide is not done"
    "$M" db "$db" check >"$T/chk" 2>&1 || no "$tag: db check: $(cat "$T/chk")"
done
# Files that are not slides at all.
grep "^$T/bad/not-slides/" "$T/list" >"$T/ns"
while IFS="	" read -r f kind; do one "$T/ns.db" "$f" "$kind"; done <"$T/ns"
"$M" db "$T/ns.db" check >"$T/chk" 2>&1 || no "not-slides: db check: $(cat "$T/chk")"

# Every synthetic bad file and the non-slides in one call, the good slide last: exit 3, the good
# slide done, every bad file either named in an error line or done.
set --
while IFS="	" read -r f kind; do
    case "$f" in "$T/bad/synth-"* | "$T/bad/not-slides/"*) set -- "$@" "$f" ;; esac
done <"$T/list"
n=$#
timeout -k 5 600 "$M" tile "$T/all.db" "$@" "$good" -q -j 2 >/dev/null 2>"$T/err"; rc=$?
[ $rc -eq 3 ] || no "one call with $n bad files: exit $rc, want 3: $(tail -c 400 "$T/err")"
[ "$(sqlite3 "$T/all.db" "SELECT status FROM slides WHERE path = '$good'")" = done ] || no "one call: the good slide is not done"
for f in "$@"; do
    grep -q "^magpie: error: $f: " "$T/err" && continue
    [ "$(sqlite3 "$T/all.db" "SELECT status FROM slides WHERE path = '$f'")" = done ] || no "one call: $f neither failed with a message nor done"
done
"$M" db "$T/all.db" check >"$T/chk" 2>&1 || no "one call: db check: $(cat "$T/chk")"
echo "bad slides: $tried tried one by one, $n in one call"
exit $fail
