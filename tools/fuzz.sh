#!/bin/sh
# tools/fuzz.sh TARGET SECONDS — a longer libFuzzer campaign on one target (ckpt, safetensors,
# npy, labels_csv, geojson, manifest, query; `all` runs each in turn). Builds build-fuzz (clang, ASan+UBSan,
# -Dfuzz=true) if needed. Prints executions; a crash's input is left in
# build-fuzz/tests/fuzz/artifacts-fuzz_TARGET/ — commit it to tests/fuzz/TARGET/ as regress-*.
set -u
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: tools/fuzz.sh TARGET|all SECONDS" >&2; exit 1; }
if [ ! -f build-fuzz/build.ninja ]; then
    CC=clang meson setup build-fuzz --buildtype=debug -Dfuzz=true -Db_sanitize=address,undefined \
        -Db_lundef=false >/dev/null || exit 2
fi
ninja -C build-fuzz -j2 >/dev/null || { ninja -C build-fuzz | tail -30; exit 2; }
targets=$1
[ "$targets" = all ] && targets="ckpt safetensors npy labels_csv geojson manifest query"
status=0
for t in $targets; do
    [ -d "tests/fuzz/$t" ] || { echo "unknown target $t" >&2; exit 1; }
    sh tests/fuzz/run_fuzz.sh "build-fuzz/tests/fuzz/fuzz_$t" "tests/fuzz/$t" "$2" || status=2
done
exit $status
