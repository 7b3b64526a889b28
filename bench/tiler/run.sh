#!/bin/sh
# bench/tiler/run.sh — magpie tile vs the openslide-python loop (../shared/peers/openslide_tile.py)
# vs `vips dzsave --depth one`, side by side in the same run, on one large synthetic 40x slide.
# All three cut 224 px patches at 10x (pyramid level 2 = downsample 4, 1.0 µm/px); magpie also
# writes the paired 1.25x image, QC scores, the tissue mask and the SQLite rows.
# Usage: sh bench/tiler/run.sh [REPEATS] [SLIDE]   (env: MAGPIE, JOBS, WORK)
# Without SLIDE, a 40960x30720 slide (1.26 Gpx) is made once with `magpie synth` under $WORK.
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
REPEATS=${1:-3}
MAGPIE=${MAGPIE:-$here/build/pipelines/magpie}
JOBS=${JOBS:-$(nproc)}
WORK=${WORK:-/tmp/magpie-bench-tiler}
PEER=${PEER:-$here/../shared/peers/openslide_tile.py}
mkdir -p "$WORK"
SLIDE=${2:-$WORK/synth/synth_000.tiff}
if [ ! -f "$SLIDE" ]; then
    echo "making $SLIDE with magpie synth (once)..." >&2
    "$MAGPIE" synth "$WORK/synth" --slides 1 --width 40960 --height 30720 --seed 7 --pen 1 >&2
fi

tv() { /usr/bin/time -v "$@" 2>"$WORK/time.txt"; }
rss_mb() { awk -F: '/Maximum resident/ {printf "%.0f", $2 / 1024}' "$WORK/time.txt"; }
cpu() { awk '/User time|System time/ {s += $NF} END {printf "%.3f", s}' "$WORK/time.txt"; }
wall() { awk '/Elapsed \(wall clock\)/ {n = split($NF, a, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + a[i]; printf "%.3f", s}' "$WORK/time.txt"; }

res="$WORK/results.txt"
: >"$res"
for r in $(seq "$REPEATS"); do
    # magpie: every grid cell (--min-tissue 0) so the patch count matches the peers' full level.
    rm -f "$WORK/m.db" "$WORK/m.db-wal" "$WORK/m.db-shm"
    tv "$MAGPIE" tile "$WORK/m.db" "$SLIDE" --min-tissue 0 --jobs "$JOBS" --progress none -q
    n=$(sqlite3 "$WORK/m.db" "SELECT count(*) FROM patches")
    b=$(sqlite3 "$WORK/m.db" "SELECT sum(length(data)) / count(*) FROM images WHERE mag = 10")
    echo "magpie $n $(wall) $(rss_mb) $b $(cpu)" >>"$res"
    # magpie as used: default tissue threshold (fewer patches, mask decides)
    rm -f "$WORK/t.db" "$WORK/t.db-wal" "$WORK/t.db-shm"
    tv "$MAGPIE" tile "$WORK/t.db" "$SLIDE" --jobs "$JOBS" --progress none -q
    n=$(sqlite3 "$WORK/t.db" "SELECT count(*) FROM patches")
    b=$(sqlite3 "$WORK/t.db" "SELECT sum(length(data)) / count(*) FROM images WHERE mag = 10")
    echo "magpie-tissue $n $(wall) $(rss_mb) $b $(cpu)" >>"$res"
    # openslide-python loop, one process, level 2
    out=$(tv /usr/bin/python3 "$PEER" "$SLIDE" 2)
    n=$(echo "$out" | awk '{print $2}')
    kib=$(echo "$out" | awk '{print $8}')
    echo "openslide-python $n $(wall) $(rss_mb) $(awk -v k="$kib" 'BEGIN {printf "%.0f", k * 1024}') $(cpu)" >>"$res"
    # vips dzsave of level 2 (page 2 of the pyramidal TIFF), one level of 224 px JPEG Q90 tiles
    rm -rf "$WORK/dz" "$WORK/dz_files" "$WORK/dz.dzi"
    tv vips dzsave "$SLIDE[page=2]" "$WORK/dz" --depth one --tile-size 224 --overlap 0 --suffix ".jpg[Q=90]"
    n=$(find "$WORK/dz_files" -name '*.jpg' | wc -l)
    b=$(find "$WORK/dz_files" -name '*.jpg' -printf '%s\n' | awk '{s += $1} END {printf "%.0f", s / NR}')
    echo "dzsave $n $(wall) $(rss_mb) $b $(cpu)" >>"$res"
done

echo "slide: $SLIDE ($(vipsheader "$SLIDE" 2>/dev/null || echo '?'))"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other sessions share the machine)"
echo "machine: $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2}'), $(nproc) cores; magpie --jobs $JOBS; repeats $REPEATS (medians)"
python3 - "$res" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, n, s, rss, b, c = line.split()
    rows.setdefault(name, []).append((int(n), float(s), int(rss), float(b), float(c)))
med = {}
for k, v in rows.items():
    n = v[0][0]
    s = statistics.median(x[1] for x in v)
    cpu = statistics.median(x[4] for x in v)
    med[k] = (n, s, n / s, statistics.median(x[2] for x in v), statistics.median(x[3] for x in v), [x[1] for x in v],
              cpu * 1000 / n)
m, mc = med["magpie"][2], med["magpie"][6]
print("| tool | patches | wall s (median) | patches/s | magpie speed-up (wall) | CPU ms/patch | magpie speed-up (CPU) | peak RSS MB | bytes/patch (10x) | wall runs (s) |")
print("|---|---|---|---|---|---|---|---|---|---|")
for k in ("magpie", "magpie-tissue", "openslide-python", "dzsave"):
    if k not in med: continue
    n, s, r, rss, b, runs, c = med[k]
    ratio = "1.00" if k == "magpie" else f"{m / r:.2f}x"
    cr = "1.00" if k == "magpie" else f"{c / mc:.2f}x"
    print(f"| {k} | {n} | {s:.2f} | {r:.1f} | {ratio} | {c:.2f} | {cr} | {rss:.0f} | {b:.0f} | {' '.join(f'{x:.2f}' for x in runs)} |")
PY
