#!/bin/sh
# The whole test suite: a normal build and an AddressSanitizer+UBSan build, both tested, then a
# clang build (build-fuzz, -Dfuzz=true) whose tests replay tests/fuzz/ and run each libFuzzer
# target for MAGPIE_FUZZ_SECONDS (30). Ends with one line "N passed, N failed, N skipped" summed
# over the three builds.
set -u
cd "$(dirname "$0")/.."
status=0
for cfg in build:debugoptimized: build-asan:debug:address,undefined build-fuzz:debug:address,undefined; do
    dir=${cfg%%:*}; rest=${cfg#*:}; bt=${rest%%:*}; san=${rest#*:}
    if [ ! -f "$dir/build.ninja" ]; then
        if [ "$dir" = build-fuzz ]; then
            command -v clang >/dev/null || { echo "build-fuzz needs clang (sh tools/install-deps.sh)"; exit 2; }
            CC=clang meson setup "$dir" --buildtype="$bt" -Dfuzz=true -Db_sanitize="$san" -Db_lundef=false >/dev/null || exit 2
        elif [ -n "$san" ]; then
            meson setup "$dir" --buildtype="$bt" -Db_sanitize="$san" -Db_lundef=false >/dev/null || exit 2
        else
            meson setup "$dir" --buildtype="$bt" >/dev/null || exit 2
        fi
    fi
    ninja -C "$dir" >/dev/null || { echo "build failed in $dir"; ninja -C "$dir" | tail -30; exit 2; }
    meson test -C "$dir" --print-errorlogs --num-processes 2 --timeout-multiplier 3 || status=1
done
python3 - <<'PY'
import json
p = f = s = 0
for d in ("build", "build-asan", "build-fuzz"):
    try:
        lines = open(d + "/meson-logs/testlog.json").read().splitlines()
    except OSError:
        continue
    for line in lines:
        r = json.loads(line).get("result")
        if r in ("OK", "EXPECTEDFAIL"): p += 1
        elif r == "SKIP": s += 1
        else: f += 1
print(f"{p} passed, {f} failed, {s} skipped")
PY
exit $status
