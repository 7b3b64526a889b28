#!/bin/sh
# tests/faults/faults_infer.sh FAULTSHIM — magpie infer with a disk that fills up (faultshim:
# ENOSPC after N bytes of one slide's output files, at several N): that slide fails in one line
# naming the file and the reason, exit 3, and leaves no prediction.json and no temporaries; the
# slide done before it is untouched (still skipped as current); a rerun with space completes it
# with the same outputs as a run that never failed. Then kill -9 inside each output write and at
# random moments: never a partial file at a real path, and a rerun equals an uninterrupted run.
set -u
SHIM=$1
M="$MAGPIE_BIN"
T=$(mktemp -d /tmp/mp_faultsinfer.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
no() { echo "FAIL: $*"; fail=1; }
# The sanitizer runtime must come first among the libraries; the shim goes before it, harmlessly.
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:verify_asan_link_order=0"

"$M" synth "$T/s" --slides 2 --width 2048 --height 2048 --mpp 0.5 --seed 5 -q || { echo "FAIL: synth"; exit 1; }
s0="$T/s/synth_000.tiff" s1="$T/s/synth_001.tiff"
"$M" model init --out "$T/r.mpk" --classes 3 --widths 32,32,32,32 >/dev/null &&
"$M" model export "$T/r.mpk" "$T/r.safetensors" >/dev/null &&
"$M" model import "$T/r.safetensors" --out "$T/m.mpk" --mag 1.25 --size 28 --mean 0,0,0 --std 1,1,1 >/dev/null ||
    { echo "FAIL: model setup"; exit 1; }
"$M" infer "$T/m.mpk" "$s0" "$s1" --out "$T/ref" -q || { echo "FAIL: reference run"; exit 1; }
"$M" infer "$T/m.mpk" "$s0" --out "$T/o" -q || no "first slide"
sum0=$(cat "$T/o/synth_000"/* | cksum)
# budgets that end inside each file, in the order infer writes them
sz() { stat -c %s "$T/ref/synth_001/$1"; }
P=$(sz probability.tif) H=$(sz heatmap.tif) O=$(sz overlay.png) G=$(sz heatmap.geojson)
for bytes in 0 $((P / 2)) $((P + H / 2)) $((P + H + O / 2)) $((P + H + O + G / 2)) $((P + H + O + G + 100)); do
    MP_FAULT=enospc MP_FAULT_PATH="/o/synth_001/" MP_FAULT_BYTES=$bytes LD_PRELOAD="$SHIM" \
        "$M" infer "$T/m.mpk" "$s0" "$s1" --out "$T/o" -q 2>"$T/e"; rc=$?
    [ $rc -eq 3 ] || no "disk full after $bytes bytes: exit $rc, want 3 ($(cat "$T/e"))"
    [ "$(wc -l <"$T/e")" -eq 1 ] || no "disk full after $bytes bytes: one line: $(cat "$T/e")"
    grep -q "^magpie: error: $T/o/synth_001/[a-z]*\.[a-z]*.*: .*No space left on device" "$T/e" ||
        no "disk full after $bytes bytes: the line names the file and the reason: $(cat "$T/e")"
    [ -e "$T/o/synth_001/prediction.json" ] && no "disk full after $bytes bytes: prediction.json vouches for a failed slide"
    ls "$T/o/synth_001" 2>/dev/null | grep -q '\.tmp\.' && no "disk full after $bytes bytes: temporaries left"
    [ "$(cat "$T/o/synth_000"/* | cksum)" = "$sum0" ] || no "disk full after $bytes bytes: the done slide changed"
done
"$M" infer "$T/m.mpk" "$s0" "$s1" --out "$T/o" 2>"$T/e" || no "rerun with space: $(cat "$T/e")"
grep -q "synth_000.tiff: outputs current, skipped" "$T/e" || no "the done slide was not skipped: $(cat "$T/e")"
for f in heatmap.tif probability.tif heatmap.geojson; do
    cmp -s "$T/o/synth_001/$f" "$T/ref/synth_001/$f" || no "after the rerun $f differs from a run that never failed"
done

# kill -9: inside each output file's write (faultshim MP_FAULT=kill at the same budgets), and from
# outside after a pseudo-random delay. After every kill no file at a real output path is partial
# (each one present equals the uninterrupted run's), prediction.json appears only with every
# output; a rerun then gives the same outputs as the uninterrupted run.
check_after_kill() { # $1: what
    d="$T/k/synth_001"
    for f in heatmap.tif probability.tif heatmap.geojson; do
        [ -e "$d/$f" ] && { cmp -s "$d/$f" "$T/ref/synth_001/$f" || no "$1: $f at its real path differs from the uninterrupted run's (partial?)"; }
        [ -e "$d/prediction.json" ] && [ ! -e "$d/$f" ] && no "$1: prediction.json without $f"
    done
    [ "$(cat "$T/k/synth_000"/* | cksum)" = "$sum0" ] || no "$1: the done slide changed"
}
rerun_equal() { # $1: what
    "$M" infer "$T/m.mpk" "$s0" "$s1" --out "$T/k" -q 2>"$T/e" || no "$1: rerun: $(cat "$T/e")"
    for f in heatmap.tif probability.tif heatmap.geojson; do
        cmp -s "$T/k/synth_001/$f" "$T/ref/synth_001/$f" || no "$1: after the rerun $f differs from the uninterrupted run's"
    done
    [ -e "$T/k/synth_001/prediction.json" ] || no "$1: no prediction.json after the rerun"
    ls "$T/k/synth_001" | grep -q '\.tmp\.' && no "$1: temporaries left after the rerun"
}
kills=0
for bytes in 0 $((P / 2)) $((P + H / 2)) $((P + H + O / 2)) $((P + H + O + G / 2)) $((P + H + O + G + 100)); do
    rm -rf "$T/k"; cp -r "$T/o" "$T/k"; rm -rf "$T/k/synth_001"
    MP_FAULT=kill MP_FAULT_PATH="/k/synth_001/" MP_FAULT_BYTES=$bytes LD_PRELOAD="$SHIM" \
        "$M" infer "$T/m.mpk" "$s0" "$s1" --out "$T/k" -q 2>/dev/null; rc=$?
    [ $rc -eq 137 ] && kills=$((kills + 1))
    check_after_kill "killed after $bytes output bytes (exit $rc)"
    rerun_equal "killed after $bytes output bytes"
done
[ $kills -ge 5 ] || no "only $kills of 6 runs were killed inside an output write"
seed=7
for k in 1 2 3 4 5 6; do
    seed=$(( (seed * 1103515245 + 12345) % 2147483648 ))
    delay=$(awk -v s=$seed 'BEGIN { printf "%.2f", 0.05 + (s % 1000) / 1000.0 * 1.5 }')
    rm -rf "$T/k"; cp -r "$T/o" "$T/k"; rm -rf "$T/k/synth_001"
    "$M" infer "$T/m.mpk" "$s0" "$s1" --out "$T/k" -q 2>/dev/null &
    pid=$!
    sleep "$delay"; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
    check_after_kill "kill -9 after $delay s"
    rerun_equal "kill -9 after $delay s"
done
[ $fail -eq 0 ] && echo "faults infer: ok"
exit $fail
