#!/bin/sh
# tests/fuzz/run_fuzz.sh FUZZER CORPUS [SECONDS] — one fuzz target's test: replay every committed
# input in CORPUS (seeds and crash regressions: each must run clean), then fuzz for SECONDS
# (default $MAGPIE_FUZZ_SECONDS or 30) starting from them. New inputs go to a scratch corpus,
# never into the source tree. A crash leaves its input in the build dir and fails the test.
set -u
bin=$1 corpus=$2
secs=${3:-${MAGPIE_FUZZ_SECONDS:-30}}
name=$(basename "$bin")
[ -x "$bin" ] || { echo "$name: fuzzer not built: $bin"; exit 1; }
[ -d "$corpus" ] || { echo "$name: no committed corpus $corpus"; exit 1; }
n=$(find "$corpus" -type f | wc -l)
[ "$n" -gt 0 ] || { echo "$name: corpus $corpus is empty"; exit 1; }
# Leaks count as failures here (a parser's error path must free what it took).
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
art=$(dirname "$bin")/artifacts-$name
mkdir -p "$art"

# 1. Replay: every committed file once (libFuzzer runs file arguments as single inputs).
if ! find "$corpus" -type f -print0 | xargs -0 "$bin" -rss_limit_mb=2048 -timeout=20 >"$art/replay.log" 2>&1; then
    tail -40 "$art/replay.log"
    echo "$name: a committed input fails (log: $art/replay.log)"
    exit 1
fi
echo "$name: $n committed inputs replayed clean"
[ "$secs" -gt 0 ] || exit 0

# 2. Fuzz from the committed corpus for a bounded time.
work=$(mktemp -d "${TMPDIR:-/tmp}/magpie-$name.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$bin" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$art/" "$work" "$corpus" >"$art/fuzz.log" 2>&1
rc=$?
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$art/fuzz.log" | tail -1)
if [ $rc -ne 0 ]; then
    tail -60 "$art/fuzz.log"
    echo "$name: FOUND A FAILURE after ${execs:-?} executions; input(s): $(ls "$art" | grep -v '\.log$' | tr '\n' ' ')"
    echo "$name: add the input to $corpus as regress-<what>, fix, and rerun"
    exit 1
fi
echo "$name: ${execs:-?} executions in ${secs} s, no failure ($(find "$work" -type f | wc -l) new corpus inputs, discarded)"
