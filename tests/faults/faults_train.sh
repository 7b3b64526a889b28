#!/bin/sh
# tests/faults/faults_train.sh MKTINY FAULTSHIM — faults injected into `magpie train`:
#  1. train SIGKILLed at pseudo-random moments, then resumed (again and again): the final
#     checkpoint, .last.mpk and the log's epochs equal an uninterrupted run's, byte for byte;
#  2. train SIGKILLed inside a checkpoint write (faultshim: kill after N bytes of *.mpk.tmp.*):
#     the checkpoint at its real path is never half-written, and the resumed run is exact;
#  3. disk full (faultshim: ENOSPC after N bytes of checkpoint): a one-line error naming the
#     file, exit 2, the previous checkpoint intact, no temp file left, and the resumed run exact.
set -u
MKTINY=$1 SHIM=$2
M="$MAGPIE_BIN"
T=$(mktemp -d /tmp/mp_faults.XXXXXX)
holder=""
trap '[ -n "$holder" ] && kill $holder 2>/dev/null; rm -rf "$T"' EXIT
fail=0 kills=0
no() { echo "FAIL: $*"; fail=1; }
"$MKTINY" "$T/d.db" || { echo "FAIL: mktiny"; exit 1; }
# The sanitizer runtime must come first among the libraries; the shim goes before it, harmlessly.
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:verify_asan_link_order=0"
train() { # OUT [more options]; the same run every time (the random kills below spell it out)
    out=$1
    shift
    "$M" train "$T/d.db" --method supervised --mag 10 --out "$out" --epochs 6 --batch 16 --seed 5 --patience 0 \
        --threads 1 --progress=none -q "$@"
}
epochs() { sed 's/,"img_per_s".*//' "$1"; } # the log without its timings
same_as_ref() { # OUT WHAT
    cmp -s "$T/ref.mpk" "$1" || no "$2: best checkpoint differs from the uninterrupted run"
    cmp -s "$T/ref.last.mpk" "${1%.mpk}.last.mpk" || no "$2: .last.mpk differs from the uninterrupted run"
    epochs "$T/ref.log.jsonl" >"$T/a"
    epochs "${1%.mpk}.log.jsonl" >"$T/b"
    cmp -s "$T/a" "$T/b" || no "$2: log epochs differ: $(diff "$T/a" "$T/b" | head -5 | tr '\n' ' ')"
}
# A checkpoint at its real path always loads in full.
whole() { # CKPT WHAT
    [ -e "$1" ] || return 0
    "$M" model info "$1" >/dev/null 2>"$T/mi" || no "$2: $1 is damaged: $(cat "$T/mi")"
}
# Run to the end, resuming when a .last.mpk exists.
finish() { # OUT
    if [ -e "${1%.mpk}.last.mpk" ]; then train "$1" --resume; else train "$1"; fi
}

start=$(date +%s)
train "$T/ref.mpk" || { echo "FAIL: uninterrupted train"; exit 1; }
took=$(($(date +%s) - start + 1))
lastsize=$(wc -c <"$T/ref.last.mpk")

# 1. kill -9 at pseudo-random moments (fixed LCG seed; each delay up to the uninterrupted run's
#    time): a session starts afresh and is killed and resumed until a run ends on its own.
r=12345
random_kills=0 session=0
while [ $random_kills -lt 12 ] && [ $session -lt 8 ]; do
    session=$((session + 1))
    out="$T/k$session.mpk"
    while :; do
        r=$(((r * 1103515245 + 12345) % 2147483648))
        ms=$((200 + r % (took * 600)))
        # started here, not inside a function run in the background: $! must be magpie itself
        if [ -e "${out%.mpk}.last.mpk" ]; then set -- --resume; else set --; fi
        "$M" train "$T/d.db" --method supervised --mag 10 --out "$out" --epochs 6 --batch 16 --seed 5 --patience 0 \
            --threads 1 --progress=none -q "$@" &
        pid=$!
        sleep "$((ms / 1000)).$(printf %03d $((ms % 1000)))"
        kill -9 $pid 2>/dev/null || { wait $pid || no "session $session: a run failed"; break; }
        wait $pid 2>/dev/null
        random_kills=$((random_kills + 1))
        whole "$out" "session $session, kill after $ms ms"
        whole "${out%.mpk}.last.mpk" "session $session, kill after $ms ms"
    done
    same_as_ref "$out" "session $session (random kills)"
    rm -f "${out%.mpk}".*
done
kills=$random_kills

# 2. killed inside a checkpoint write (per epoch the best model, 1/3 the size of .last.mpk, is
#    written first): 1000 bytes and half a .last.mpk's size into the first .last.mpk, just into
#    the second epoch's best model, 100 KB into the second .last.mpk
for spec in ".last.mpk.tmp:1000" ".mpk.tmp:$((lastsize / 2))" ".mpk.tmp:$((lastsize + lastsize / 3 + 4096))" \
    ".last.mpk.tmp:$((lastsize + 100000))"; do
    out="$T/c.mpk"
    MP_FAULT=kill MP_FAULT_PATH=${spec%:*} MP_FAULT_BYTES=${spec#*:} LD_PRELOAD="$SHIM" train "$out" 2>/dev/null; rc=$?
    [ $rc -eq 137 ] || no "kill in a checkpoint write ($spec): exit $rc, want 137 (SIGKILL)"
    [ $rc -eq 137 ] && kills=$((kills + 1))
    ls "$T"/c.*tmp* >/dev/null 2>&1 || no "kill in a checkpoint write ($spec): no temp file, so the kill hit nothing"
    whole "$out" "kill in write $spec"
    whole "${out%.mpk}.last.mpk" "kill in write $spec"
    finish "$out" || no "resume after a kill in a checkpoint write ($spec) failed"
    same_as_ref "$out" "kill in a checkpoint write ($spec)"
    rm -f "$T"/c.*
done

# 3a. disk full while training, in the second epoch's checkpoints
out="$T/f.mpk"
MP_FAULT=enospc MP_FAULT_PATH=.mpk.tmp MP_FAULT_BYTES=$((lastsize * 3 / 2)) LD_PRELOAD="$SHIM" train "$out" 2>"$T/err"; rc=$?
[ $rc -eq 2 ] || no "train, disk full: exit $rc, want 2"
[ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "^magpie: error: $T/f.*No space left on device" "$T/err" \
    || no "train, disk full: message: $(cat "$T/err")"
ls "$T"/f.*tmp* >/dev/null 2>&1 && no "train, disk full: temp file left: $(ls "$T"/f.*tmp*)"
whole "$out" "train, disk full"
whole "${out%.mpk}.last.mpk" "train, disk full"
[ -e "${out%.mpk}.last.mpk" ] || no "train, disk full: the first epoch's .last.mpk is gone"
finish "$out" || no "train, resume after disk full failed"
same_as_ref "$out" "disk full then resume"

[ $fail -eq 0 ] && echo "faults-train: $random_kills random SIGKILLs in $session sessions, $((kills - random_kills)) inside checkpoint writes, disk full once, no loss"
exit $fail
