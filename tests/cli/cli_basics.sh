#!/bin/sh
# The binary's contract: --help works, unknown commands are usage errors (exit 1).
set -u
fail=0
"$MAGPIE_BIN" --help | grep -q '^commands:' || { echo "FAIL: --help"; fail=1; }
"$MAGPIE_BIN" >/dev/null 2>&1; [ $? -eq 1 ] || { echo "FAIL: no args should exit 1"; fail=1; }
"$MAGPIE_BIN" frobnicate >/dev/null 2>&1; [ $? -eq 1 ] || { echo "FAIL: unknown command should exit 1"; fail=1; }
"$MAGPIE_BIN" --version | grep -q '^magpie ' || { echo "FAIL: --version"; fail=1; }

# Options with a value take "--name VALUE" and "--name=VALUE" alike in every subcommand (train took
# only --progress=MODE). A missing dataset then fails with exit 2, past the option parsing.
T=$(mktemp -d /tmp/mp_clibasics_XXXXXX)
trap 'rm -rf "$T"' EXIT
code() { want=$1; shift; "$MAGPIE_BIN" "$@" >/dev/null 2>"$T/err"; rc=$?; [ $rc -eq "$want" ] || { echo "FAIL: magpie $* exit $rc, expected $want: $(cat "$T/err")"; fail=1; }; }
for p in "--progress none" "--progress=none" "--progress json" "--epochs=2 --batch=8 --progress=json"; do
    # shellcheck disable=SC2086
    code 2 train "$T/absent.db" --method=supervised --mag 10 --out "$T/m.mpk" $p
    grep -q "absent.db" "$T/err" || { echo "FAIL: train $p: $(cat "$T/err")"; fail=1; }
done
code 1 train "$T/absent.db" --method supervised --mag 10 --out "$T/m.mpk" --progress bogus
code 1 train "$T/absent.db" --method supervised --mag 10 --out "$T/m.mpk" --resume=yes
code 1 train "$T/absent.db" --method supervised --mag 10 --out "$T/m.mpk" --epochs
code 2 eval "$T/absent.db" "$T/m.mpk" --split=test --batch=8 --bootstrap=100
code 2 eval "$T/absent.db" "$T/m.mpk" --split test --threads 1
code 1 eval "$T/absent.db" "$T/m.mpk" --batch=0
code 1 demo "$T/demo" --slides=0
code 1 demo "$T/demo" --width
# demo parses through the common parser: exact names with a hint, one usage line, nothing created
line() { # line "exact stderr" ARGS...: exit 1 and exactly that one line
    want=$1; shift
    "$MAGPIE_BIN" "$@" >/dev/null 2>"$T/err"; rc=$?
    [ $rc -eq 1 ] && [ "$(cat "$T/err")" = "$want" ] ||
        { echo "FAIL: magpie $* exit $rc: $(cat "$T/err"), want: $want"; fail=1; }
}
line "magpie: error: demo: unknown option '--slide' (did you mean '--slides'?) (see magpie demo --help)" \
    demo "$T/demo" --slide 3
line "magpie: error: demo: unknown option '--teacher' (did you mean '--teacher-epochs'?) (see magpie demo --help)" \
    demo "$T/demo" --teacher=3
line "magpie: error: demo: unknown option '--frob' (see magpie demo --help)" demo "$T/demo" --frob
line "magpie: error: demo: option '--width' needs a value (see magpie demo --help)" demo "$T/demo" --width
line "magpie: error: demo: --slides wants a positive integer, got '0' (see magpie demo --help)" \
    demo "$T/demo" --slides=0
line "magpie: error: demo: unexpected argument 'other' (one DIR) (see magpie demo --help)" demo "$T/demo" other
[ ! -e "$T/demo" ] || { echo "FAIL: a demo usage error created its folder"; fail=1; }
"$MAGPIE_BIN" demo "$T/demo" --slides 2 --help | grep -q '^usage: magpie demo ' || { echo "FAIL: demo --help"; fail=1; }
[ ! -e "$T/demo" ] || { echo "FAIL: demo --help created its folder"; fail=1; }
# the top level and db merge give the same one line
line "magpie: error: unknown command 'frobnicate' (see magpie --help)" frobnicate
line "magpie: error: db merge: unknown option '--qui' (did you mean '--quiet'?) (see magpie db merge --help)" \
    db merge "$T/m.db" "$T/a.db" --qui
line "magpie: error: db merge: wants OUT and at least one SHARD (see magpie db merge --help)" db merge "$T/m.db"
line "magpie: error: db merge: wants OUT and at least one SHARD (see magpie db merge --help)" db "$T/m.db" merge -q
[ ! -e "$T/m.db" ] || { echo "FAIL: a db merge usage error created OUT"; fail=1; }
"$MAGPIE_BIN" db merge --help | grep -q '^usage: magpie db merge ' || { echo "FAIL: db merge --help"; fail=1; }
exit $fail
