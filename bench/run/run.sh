#!/bin/sh
# bench/run/run.sh — `magpie run` over a batch of synthetic slides (tile at 10x+1.25x, infer with
# a 1.25x/28 px ResNet-GN student, random weights: cost, not accuracy):
#   - throughput with --jobs 1 and --jobs 2 (both with --threads 2): slides/hour, patches/s;
#   - the same work by hand, `magpie tile` then `magpie infer --db` per slide (each --jobs/
#     --threads 2), one after the other: run's overhead (or gain) against it;
#   - a rerun when everything is done (resume), over all the slides and over 5 of them: the
#     cost per slide and the fixed cost per run;
#   - per-slide figures for docs/scale.md: dataset bytes, patches, heatmap bytes, seconds;
#   - `magpie db merge` of two halves of the batch: MB/s.
# Runs alternate (jobs 1, jobs 2, by hand) within each repeat; medians over repeats.
# Usage: sh bench/run/run.sh [BUILD_DIR] [WORK_DIR] [REPEATS] [SLIDES]
# Prints a Markdown section for BENCHMARKS.md on stdout; raw lines go to WORK_DIR/raw.txt.
set -eu
BUILD=${1:-build}
W=${2:-/tmp/magpie-bench-run}
REP=${3:-3}
NS=${4:-20}
B="$(cd "$BUILD" && pwd)/pipelines/magpie"
[ -x "$B" ] || { echo "no magpie binary at $B" >&2; exit 1; }
mkdir -p "$W"
SW=8192 SH=6144 # 20x (0.5 µm/px): 4.1 mm x 3.1 mm of glass per slide
if [ "$(ls "$W"/slides/synth_*.tiff 2>/dev/null | wc -l)" -ne "$NS" ]; then
    echo "generating $NS slides of ${SW}x${SH} ..." >&2
    rm -rf "$W/slides"
    "$B" synth "$W/slides" --slides "$NS" --width $SW --height $SH --mpp 0.5 --seed 5 --quiet
fi
if [ ! -f "$W/m125.mpk" ]; then
    "$B" model init --out "$W/r.mpk" --classes 3 >/dev/null
    "$B" model export "$W/r.mpk" "$W/r.safetensors" >/dev/null
    "$B" model import "$W/r.safetensors" --out "$W/m125.mpk" --mag 1.25 --size 28 --mean 0,0,0 --std 1,1,1 >/dev/null
fi
{
    echo "slide"
    for f in "$W"/slides/synth_*.tiff; do echo "$f"; done
} >"$W/manifest.csv"
head -6 "$W/manifest.csv" >"$W/manifest5.csv"
RAW="$W/raw.txt"
: >"$RAW"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
now() { date +%s.%N; }
# wall and CPU (user + system) seconds of one command
timed() { /usr/bin/time -f "%e %U %S" -o "$W/time.txt" "$@"; }
wallcpu() { awk '{printf "wall=%s cpu=%.3f", $1, $2 + $3}' "$W/time.txt"; }
el() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", b - a}'; }
clean() { rm -rf "$W/out" "$W/hand"; }
for i in $(seq 1 "$REP"); do
    for j in 1 2; do
        clean
        t0=$(now)
        "$B" run "$W/manifest.csv" --out "$W/out" --model "$W/m125.mpk" --jobs $j --threads 2 --progress none -q
        t1=$(now)
        p=$(sqlite3 "$W/out/dataset.db" "SELECT count(*) FROM patches")
        c=$(sqlite3 "$W/out/dataset.db" "SELECT count(*) FROM predictions")
        echo "run jobs=$j rep=$i wall=$(el "$t0" "$t1") patches=$p cells=$c" | tee -a "$RAW" >&2
        # resume with everything done: the same command again
        for k in 1 2 3; do
            timed "$B" run "$W/manifest.csv" --out "$W/out" --model "$W/m125.mpk" --jobs $j --threads 2 --progress none -q
            echo "resume jobs=$j rep=$i.$k $(wallcpu)" | tee -a "$RAW" >&2
        done
        # the same over the first 5 slides: the slope between the two is the cost per slide, the
        # rest is the fixed cost of a run (process start, libvips modules, the model, the lock)
        for k in 1 2 3; do
            timed "$B" run "$W/manifest5.csv" --out "$W/out" --model "$W/m125.mpk" --jobs $j --threads 2 --progress none -q
            echo "resume5 jobs=$j rep=$i.$k $(wallcpu)" | tee -a "$RAW" >&2
        done
        # of which the report (rewritten by every run): the same page alone
        timed "$B" report "$W/out" --out "$W/report-only.html" -q
        echo "report jobs=$j rep=$i $(wallcpu)" | tee -a "$RAW" >&2
    done
    # the per-slide facts, from the last run's folder
    if [ "$i" -eq 1 ]; then
        db=$(stat -c %s "$W/out/dataset.db")
        hm=$(du -sb "$W/out/heatmaps" | cut -f1)
        th=$(du -sb "$W/out/thumbs" 2>/dev/null | cut -f1 || echo 0)
        im=$(sqlite3 "$W/out/dataset.db" "SELECT sum(length(data)) FROM images")
        im10=$(sqlite3 "$W/out/dataset.db" "SELECT avg(length(data)) FROM images WHERE mag = 10")
        im125=$(sqlite3 "$W/out/dataset.db" "SELECT avg(length(data)) FROM images WHERE mag = 1.25")
        echo "sizes dataset=$db images=$im heatmaps=$hm thumbs=$th img10=$im10 img125=$im125" | tee -a "$RAW" >&2
        # merge: the batch as two shards, then one merge
        rm -rf "$W/sh"
        "$B" run "$W/manifest.csv" --out "$W/sh/a" --shard 1/2 --threads 2 --progress none -q
        "$B" run "$W/manifest.csv" --out "$W/sh/b" --shard 2/2 --threads 2 --progress none -q
        t0=$(now)
        "$B" db merge "$W/sh/m.db" "$W/sh/a/dataset.db" "$W/sh/b/dataset.db" -q
        t1=$(now)
        echo "merge wall=$(el "$t0" "$t1") bytes=$(stat -c %s "$W/sh/m.db")" | tee -a "$RAW" >&2
    fi
    # by hand: tile then infer, slide after slide, into one dataset
    clean
    mkdir -p "$W/hand"
    t0=$(now)
    for f in "$W"/slides/synth_*.tiff; do
        "$B" tile "$W/hand/dataset.db" "$f" --jobs 2 --progress none -q
        "$B" infer "$W/m125.mpk" "$f" --out "$W/hand/heatmaps" --db "$W/hand/dataset.db" --threads 2 --progress none -q
    done
    t1=$(now)
    p=$(sqlite3 "$W/hand/dataset.db" "SELECT count(*) FROM patches")
    echo "hand rep=$i wall=$(el "$t0" "$t1") patches=$p" | tee -a "$RAW" >&2
done
clean
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$RAW" "$NS" "$LOAD0" "$LOAD1" "$SW" "$SH" <<'EOF'
import re, statistics, sys, platform, os
raw, ns, load0, load1, sw, sh = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
rows = [dict(kv.split("=") for kv in l.split()[1:]) | {"kind": l.split()[0]} for l in open(raw) if l.strip()]
med = lambda xs: statistics.median(xs) if xs else float("nan")
def walls(kind, **f):
    return [float(r["wall"]) for r in rows if r["kind"] == kind and all(r.get(k) == v for k, v in f.items())]
run1, run2, hand = walls("run", jobs="1"), walls("run", jobs="2"), walls("hand")
res1, res2 = walls("resume", jobs="1"), walls("resume", jobs="2")
cpus = lambda kind: [float(r["cpu"]) for r in rows if r["kind"] == kind]
rcpu, rep_w, rep_c = cpus("resume"), walls("report"), cpus("report")
patches = int(next(r["patches"] for r in rows if r["kind"] == "run"))
cells = int(next(r["cells"] for r in rows if r["kind"] == "run"))
sz = next(r for r in rows if r["kind"] == "sizes")
mg = next((r for r in rows if r["kind"] == "merge"), None)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"## Batch runs (bench/run)\n")
print(f"`sh bench/run/run.sh build /tmp/magpie-bench-run {len(run1)} {ns}` — {ns} synthetic slides of {sw}x{sh} px at "
      f"0.5 µm/px (`magpie synth --seed 5`), tiled at 10x + 1.25x (224/28 px, JPEG q90) and inferred with a 1.25x/28 px "
      f"ResNet-GN student (3 classes, random weights); {patches} patches and {cells} evaluated cells in all. "
      f"Machine: {cpu}, {os.cpu_count()} cores; load average {load0} at the start, {load1} at the end — the machine is "
      f"shared with other jobs, so the figures are noisy; medians over {len(run1)} repeats, runs alternating.\n")
print("| what | wall (median) | slides/hour | patches/s | vs by hand |")
print("|---|---|---|---|---|")
h = med(hand)
for name, xs in (("`magpie run --jobs 1 --threads 2`", run1), ("`magpie run --jobs 2 --threads 2`", run2),
                 ("by hand: `magpie tile` + `magpie infer --db` per slide", hand)):
    m = med(xs)
    print(f"| {name} | {m:.1f} s | {ns / m * 3600:.0f} | {patches / m:.0f} | {m / h:.2f}x |")
print()
r5w, r5c, rall = walls("resume5"), cpus("resume5"), res1 + res2
per_w = (med(rall) - med(r5w)) / (ns - 5)
per_c = (med(rcpu) - med(r5c)) / (ns - 5)
print(f"Resume with everything done (the same `magpie run` again: {len(rall)} reruns over the {ns} slides, "
      f"{len(r5w)} over the first 5): {ns} slides take {med(rall):.2f} s of wall and {med(rcpu):.2f} s of CPU, "
      f"5 slides {med(r5w):.2f} s and {med(r5c):.2f} s. So each slide costs {per_w * 1000:.0f} ms of wall and "
      f"{per_c * 1000:.1f} ms of CPU, on top of a fixed {med(r5w) - 5 * per_w:.2f} s of wall and "
      f"{med(r5c) - 5 * per_c:.2f} s of CPU per run (process start, libvips modules, model load). "
      f"`magpie report` alone over the {ns} slides (every run rewrites the page): {med(rep_w):.2f} s of wall, "
      f"{med(rep_c):.2f} s of CPU.\n")
db, im, hm, th = int(sz["dataset"]), int(float(sz["images"])), int(sz["heatmaps"]), int(sz["thumbs"])
print(f"Per slide (for docs/scale.md): {patches / ns:.0f} patches, dataset {db / ns / 1e6:.2f} MB "
      f"({db / patches / 1024:.1f} KiB per patch; images {im / db * 100:.0f}% of it: "
      f"{float(sz['img10']) / 1024:.1f} KiB at 10x, {float(sz['img125']) / 1024:.2f} KiB at 1.25x), heatmaps "
      f"{hm / ns / 1e6:.2f} MB, thumbnails {th / ns / 1e3:.0f} kB; {med(run2) / ns:.2f} s of wall per slide with 2 cores "
      f"({med(run2) / patches * 1000:.1f} ms per patch).")
if mg:
    w, b = float(mg["wall"]), int(mg["bytes"])
    print(f"`magpie db merge` of the batch as 2 shards (tile only): {w:.2f} s for {b / 1e6:.1f} MB "
          f"({b / 1e6 / w:.0f} MB/s, {ns / w:.0f} slides/s).")
EOF
