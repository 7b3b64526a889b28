#!/bin/sh
# tests/faults/faults_alloc.sh — an allocation that fails for one slide fails that slide, never the
# process (issue 14). MAGPIE_ALLOC_FAIL=N makes the Nth soft allocation (mp_try_*) fail; for every N
# over the range the first slide's calls span, with either slide first, `magpie tile` and `magpie
# run` either finish (the
# failed allocation had a fallback: the direct TIFF reader's buffers give way to OpenSlide) or
# exit 3 with exactly one slide failed, its reason "out of memory" naming it, the other slide
# done; the dataset passes `db check`; a rerun without the fault finishes both.
set -u
B="$MAGPIE_BIN"
T=$(mktemp -d /tmp/mp_faults_alloc.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
no() { echo "FAIL: $*"; fail=1; }
unset MAGPIE_ALLOC_FAIL

"$B" synth "$T/s" --slides 2 --width 2048 --height 2048 --mpp 0.5 --seed 7 -q || { echo "FAIL: synth"; exit 1; }
"$B" model init --out "$T/r.mpk" --classes 3 --widths 32,32,32,32 >/dev/null &&
"$B" model export "$T/r.mpk" "$T/r.safetensors" >/dev/null &&
"$B" model import "$T/r.safetensors" --out "$T/m.mpk" --mag 1.25 --size 28 --mean 0,0,0 --std 1,1,1 >/dev/null ||
    { echo "FAIL: model setup"; exit 1; }
S0="$T/s/synth_000.tiff"
S1="$T/s/synth_001.tiff"
printf 'slide\ns/synth_000.tiff\ns/synth_001.tiff\n' >"$T/man01.csv"
printf 'slide\ns/synth_001.tiff\ns/synth_000.tiff\n' >"$T/man10.csv"

q() { sqlite3 "$1" "$2"; }
# the dataset after a faulted command: one failed slide (out of memory, named) and one done, or both done
check_db() { # DB RC WHAT ERRFILE -> sets failed_slide (0, 1 or "")
    db=$1 rc=$2 what=$3 errf=$4
    failed_slide=""
    "$B" db "$db" check >"$T/check.out" 2>&1 || no "$what: db check: $(tail -1 "$T/check.out")"
    case $rc in
    0) [ "$(q "$db" "SELECT count(*) FROM slides WHERE status = 'done'")" = 2 ] || no "$what: exit 0 without both slides done" ;;
    3)
        [ "$(q "$db" "SELECT count(*) FROM slides WHERE status = 'done'")" = 1 ] || no "$what: exit 3 but not one slide done"
        bad=$(q "$db" "SELECT path FROM slides WHERE status = 'failed' AND error LIKE '%out of memory%' AND instr(error, path) = 1")
        case $bad in
        "$S0") failed_slide=0 ;;
        "$S1") failed_slide=1 ;;
        *) no "$what: no slide failed with 'out of memory' naming it: $(q "$db" "SELECT status, error FROM slides")" ;;
        esac
        [ -n "$bad" ] && { grep -q "out of memory" "$errf" && grep -qF "$bad" "$errf"; } ||
            no "$what: stderr does not say out of memory for $bad: $(head -c 300 "$errf")"
        ;;
    *) no "$what: exit $rc (want 0 or 3): $(head -c 300 "$errf")" ;;
    esac
}

# magpie tile: one process, the slides one after the other, in both orders
t0=0 t1=0
for order in 01 10; do
  if [ $order = 01 ]; then A=$S0 Z=$S1; else A=$S1 Z=$S0; fi
  for n in $(seq 1 30); do
    db="$T/t$n.db"
    MAGPIE_ALLOC_FAIL=$n "$B" tile "$db" "$A" "$Z" --size 64 --mags 10 -j 1 -q 2>"$T/err"
    rc=$?
    check_db "$db" $rc "tile N=$n" "$T/err"
    [ "$failed_slide" = 0 ] && t0=$((t0 + 1))
    [ "$failed_slide" = 1 ] && t1=$((t1 + 1))
    if [ $rc = 3 ]; then
        "$B" tile "$db" "$A" "$Z" --size 64 --mags 10 -j 1 -q || no "tile N=$n: rerun without the fault"
        [ "$(q "$db" "SELECT count(*) FROM slides WHERE status = 'done'")" = 2 ] || no "tile N=$n: rerun left a slide undone"
    fi
    rm -f "$db" "$db"-*
  done
done
[ $t0 -gt 0 ] && [ $t1 -gt 0 ] || no "tile: the injected failures did not reach both slides ($t0 and $t1 of 60)"
echo "tile: $t0 faults failed the first slide, $t1 the second, the others had a fallback"

# magpie run: tile then infer per slide (thumbnails, grids, heatmaps, predictions). A slide whose
# infer step fails stays tiled in the dataset; status.csv holds the run's verdict.
r0=0 r1=0
for order in 01 10; do
  for n in $(seq 1 4 90); do
    o="$T/o$n"
    MAGPIE_ALLOC_FAIL=$n "$B" run "$T/man$order.csv" --model "$T/m.mpk" --size 64 --mags 10,2.5 --overlay-size 256 -j 1 -q \
        --out "$o" 2>"$T/err"
    rc=$?
    "$B" db "$o/dataset.db" check >"$T/check.out" 2>&1 || no "run N=$n: db check: $(tail -1 "$T/check.out")"
    ndone=$(grep -c '^"[^"]*","[^"]*",[0-9]*,"done",""' "$o/status.csv")
    case $rc in
    0) [ "$ndone" = 2 ] || no "run N=$n: exit 0 without both slides done" ;;
    3)
        [ "$ndone" = 1 ] || no "run N=$n: exit 3 but $ndone slides done"
        if grep -q "^\"$S0\",\"synth_000\",[23],\"failed\",\"$S0: out of memory" "$o/status.csv"; then
            r0=$((r0 + 1)) bad=$S0
        elif grep -q "^\"$S1\",\"synth_001\",[23],\"failed\",\"$S1: out of memory" "$o/status.csv"; then
            r1=$((r1 + 1)) bad=$S1
        else
            bad=""
            no "run N=$n: no slide failed with 'out of memory' naming it: $(cut -d, -f4,5 "$o/status.csv" | tail -2)"
        fi
        [ -n "$bad" ] && { grep -q "out of memory" "$T/err" && grep -qF "$bad" "$T/err"; } ||
            no "run N=$n: stderr does not say out of memory for $bad: $(head -c 300 "$T/err")"
        "$B" run "$T/man$order.csv" --model "$T/m.mpk" --size 64 --mags 10,2.5 --overlay-size 256 -j 1 -q --out "$o" ||
            no "run N=$n: rerun without the fault"
        [ "$(grep -c '"done",""' "$o/status.csv")" = 2 ] || no "run N=$n: rerun: $(cut -d, -f4,5 "$o/status.csv" | tail -2)"
        "$B" db "$o/dataset.db" check >/dev/null 2>&1 || no "run N=$n: db check after the rerun"
        ;;
    *) no "run N=$n: exit $rc (want 0 or 3): $(head -c 300 "$T/err")" ;;
    esac
    rm -rf "$o"
  done
done
[ $r0 -gt 0 ] && [ $r1 -gt 0 ] || no "run: the injected failures did not reach both slides ($r0 and $r1)"
echo "run: $r0 faults failed the first slide, $r1 the second"
[ $fail = 0 ] && echo "faults-alloc: all passed"
exit $fail
