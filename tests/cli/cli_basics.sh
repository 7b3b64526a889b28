#!/bin/sh
# The binary's contract: --help works, unknown commands are usage errors (exit 1).
set -u
fail=0
"$MAGPIE_BIN" --help | grep -q '^commands:' || { echo "FAIL: --help"; fail=1; }
"$MAGPIE_BIN" >/dev/null 2>&1; [ $? -eq 1 ] || { echo "FAIL: no args should exit 1"; fail=1; }
"$MAGPIE_BIN" frobnicate >/dev/null 2>&1; [ $? -eq 1 ] || { echo "FAIL: unknown command should exit 1"; fail=1; }
"$MAGPIE_BIN" --version | grep -q '^magpie ' || { echo "FAIL: --version"; fail=1; }
exit $fail
