#!/bin/sh
# magpie view over HTTP: a run folder (2 synthetic slides, heatmaps, dataset) and a folder with a
# symlink leading out of it. Tiles against the tiler's reads and infer's heatmap.tif
# (test_view_tiles), traversal, methods, Host, sizes, dataset routes, concurrency and connection
# limits (http_checks.py), usage errors; then each real slide of ../shared/data when present.
set -u
T=$(mktemp -d /tmp/mp_view_http.XXXXXX)
PIDS=""
trap 'for p in $PIDS; do kill "$p" 2>/dev/null; done; rm -rf "$T"' EXIT
B="$MAGPIE_BIN"
fail=0
no() { echo "FAIL: $*"; fail=1; }
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

. "$MAGPIE_SRC/tests/view/serve.sh" # serve LOG ARGS...: sets PORT, adds to PIDS

"$B" synth "$T/s" --slides 2 --width 4096 --height 3072 --mpp 0.5 --seed 4 -q || { echo "synth failed"; exit 1; }
"$B" model init --out "$T/r.mpk" --classes 3 --widths 32,32,32,32 >/dev/null &&
"$B" model export "$T/r.mpk" "$T/r.safetensors" >/dev/null &&
"$B" model import "$T/r.safetensors" --out "$T/m.mpk" --mag 1.25 --size 28 --mean 0,0,0 --std 1,1,1 >/dev/null ||
    { echo "model setup failed"; exit 1; }
printf 'slide,label\n%s/s/synth_000.tiff,Tumor\n%s/s/synth_001.tiff,Normal\n' "$T" "$T" >"$T/a.csv"
"$B" run "$T/a.csv" --out "$T/run" --model "$T/m.mpk" -q || { echo "magpie run failed"; exit 1; }
# a folder of slides with a symlink to a slide outside it
mkdir -p "$T/dir" "$T/elsewhere"
cp "$T/s/synth_001.tiff" "$T/elsewhere/outside.tiff"
ln -s "$T/elsewhere/outside.tiff" "$T/dir/outside.tiff"
cp "$T/s/synth_000.tiff" "$T/dir/z_inside.tiff" # sorts after synth_*: slides are numbered by name
# the run's report folder: a symlink out of it (never served) and one that stays inside (served)
printf '<svg xmlns="http://www.w3.org/2000/svg">SECRET</svg>\n' >"$T/elsewhere/secret.svg"
ln -s "$T/elsewhere/secret.svg" "$T/run/thumbs/leak.svg"
ln -s "$(ls "$T/run/thumbs/"*.jpg | head -1)" "$T/run/thumbs/alias.jpg"

# usage and bad paths
"$B" view 2>/dev/null; [ $? -eq 1 ] || no "no PATH should exit 1"
"$B" view "$T/run" --port x 2>"$T/e"; [ $? -eq 1 ] || no "--port x should exit 1"
grep -q "port wants a whole number" "$T/e" || no "--port x: $(cat "$T/e")"
"$B" view "$T/missing" --port 0 2>"$T/e"; [ $? -eq 2 ] || no "a missing PATH should exit 2"
grep -q "^magpie: error: $T/missing: No such file or directory" "$T/e" || no "missing PATH: $(cat "$T/e")"
"$B" view "$T/a.csv" --port 0 2>"$T/e"; [ $? -eq 2 ] || no "a CSV given as PATH should exit 2"
grep -q "^magpie: error: $T/a.csv: not a slide or a magpie dataset (not a slide OpenSlide can read" "$T/e" || no "CSV PATH: $(cat "$T/e")"
"$B" view "$T/run" --bind 999.1.1.1 --port 0 2>"$T/e" >/dev/null; [ $? -eq 2 ] || no "a bad --bind should exit 2"
grep -q "bind 999.1.1.1: not an IPv4 or IPv6 address" "$T/e" || no "bad --bind: $(cat "$T/e")"

serve "$T/v1" "$T/run" "$T/dir" || exit 1
P1=$PORT
grep -q "^slide 0  synth_000  4096x3072, heatmap, dataset" "$T/v1" || no "catalog: $(cat "$T/v1")"
grep -q "outside.tiff: leads outside $T/dir (not shown)" "$T/v1.err" || no "the symlink out was not reported: $(cat "$T/v1.err")"
grep -q "^slide 2  z_inside " "$T/v1" || no "the slide inside the folder is not listed"
grep -q "^report 0  run  /r/0/report.html  ($T/run/report.html)" "$T/v1" || no "the run's report is not listed"
# a second server on the same port is refused
"$B" view "$T/run" --port "$P1" 2>"$T/e" >/dev/null; [ $? -eq 2 ] || no "a port in use should exit 2"
grep -q "cannot listen on 127.0.0.1 port $P1" "$T/e" || no "port in use: $(cat "$T/e")"

"$VIEW_TILES" "$P1" 0 "$T/s/synth_000.tiff" "$T/run/heatmaps/synth_000" || no "tiles of synth_000"

serve "$T/v2" "$T/run" --per-ip 4 --timeout 2 || exit 1
"$PY" "$MAGPIE_SRC/tests/view/report_checks.py" "$P1" "$T/run" || no "report checks"
P2=$PORT
"$PY" "$MAGPIE_SRC/tests/view/http_checks.py" "$P1" "$T/run/dataset.db" "$P2" || no "http checks"
# the dataset is unchanged by all that (read-only)
[ "$(sqlite3 "$T/run/dataset.db" 'PRAGMA integrity_check')" = ok ] || no "dataset damaged"

# real slides, each served alone
D="${MAGPIE_SHARED_DATA:-}"
n=0
if [ -d "$D/slides" ]; then
    for f in "$D"/slides/*/*; do
        case "$f" in *.svs|*.tif|*.tiff|*.ndpi) ;; *) continue ;; esac
        serve "$T/vr" "$f" || { no "view $f"; continue; }
        MAGPIE_VIEW_QUICK=1 MAGPIE_VIEW_TOLERANT=1 "$VIEW_TILES" "$PORT" 0 "$f" >"$T/vr.out" 2>&1 || { no "tiles of $f"; tail -5 "$T/vr.out"; }
        grep "^NOTE" "$T/vr.out" | head -5
        tail -1 "$T/vr.out"
        n=$((n + 1))
    done
fi
[ $n -gt 0 ] || echo "SKIP real slides: none under ${D:-../shared/data}/slides"
exit $fail
