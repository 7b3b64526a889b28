#!/bin/sh
# tests/faults/faults_run.sh FAULTSHIM — magpie run killed (SIGKILL) at many points, then rerun
# until it finishes: the final dataset, heatmaps, thumbnails and status.csv equal those of a run
# that was never interrupted. Kill points: after N slides, inside the tiler's batches and just
# before its finish, inside infer before prediction.json, in the middle of a write to the dataset,
# a heatmap, a thumbnail, status.csv or report.html (faultshim), and at random moments. Also a second run
# started on the same folder while one is going is refused (one run per folder).
set -u
SHIM=$1
B="$MAGPIE_BIN"
T=$(mktemp -d /tmp/mp_faults_run.XXXXXX)
bg=""
trap '[ -n "$bg" ] && kill -9 $bg 2>/dev/null; rm -rf "$T"' EXIT
fail=0
no() { echo "FAIL: $*"; fail=1; }
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:verify_asan_link_order=0"

"$B" synth "$T/s" --slides 4 --width 2048 --height 2048 --mpp 0.5 --seed 7 -q || { echo "synth failed"; exit 1; }
"$B" model init --out "$T/r.mpk" --classes 3 --widths 32,32,32,32 >/dev/null &&
"$B" model export "$T/r.mpk" "$T/r.safetensors" >/dev/null &&
"$B" model import "$T/r.safetensors" --out "$T/m.mpk" --mag 1.25 --size 28 --mean 0,0,0 --std 1,1,1 >/dev/null ||
    { echo "model setup failed"; exit 1; }
{
    echo "slide,patient,label,split"
    echo "s/synth_000.tiff,p0,Tumor,train"
    echo "s/synth_001.tiff,p1,Normal,val"
    echo "s/synth_002.tiff,p0,Tumor,train"
    echo "s/synth_003.tiff,p2,,test"
} >"$T/man.csv"
# small patches, so a slide has several of the tiler's batches to be killed between
RUN="run $T/man.csv --model $T/m.mpk --size 64 --mags 10,2.5 --overlay-size 256 -j 2 -q"

# Everything a run leaves, without timings: the dataset by content (ids and row order differ
# between runs), the files byte for byte (prediction.json without its timing), status.csv
# without its seconds columns.
snapshot() {
    d=$1
    sqlite3 "$d/dataset.db" "SELECT path, name, fingerprint, patient, label, status, error, n_patches, n_bad_tiles, mpp_x, mpp_source, params_hash, hex(mask) FROM slides ORDER BY path"
    sqlite3 "$d/dataset.db" "SELECT s.path, p.gx, p.gy, p.x0, p.y0, p.tissue, p.blur, p.pen, i.mag, i.level, i.codec, hex(i.data) FROM patches p JOIN slides s ON s.id = p.slide_id JOIN images i ON i.patch_id = p.id ORDER BY 1, 2, 3, 9"
    sqlite3 "$d/dataset.db" "SELECT s.path, t.split FROM splits t JOIN slides s ON s.id = t.slide_id ORDER BY 1"
    sqlite3 "$d/dataset.db" "SELECT id, name FROM classes ORDER BY id"
    sqlite3 "$d/dataset.db" "SELECT slide_path, s.path, gx, gy, x0, y0, class_name, probs FROM predictions p LEFT JOIN slides s ON s.id = p.slide_id ORDER BY 1, 3, 4"
    sqlite3 "$d/dataset.db" "SELECT count(*) FROM tile_errors"
    (cd "$d" && find heatmaps thumbs -type f | sort | while read -r f; do
        case $f in
        */prediction.json) python3 -c "import json,sys; j=json.load(open(sys.argv[1])); j.pop('timing'); print(sys.argv[1], json.dumps(j, sort_keys=True))" "$f" ;;
        *) echo "$f $(sha256sum <"$f" | cut -c1-64)" ;;
        esac
    done)
    cut -d, -f1-15 "$d/status.csv"
}

"$B" $RUN --out "$T/ref" || { echo "FAIL: reference run"; exit 1; }
snapshot "$T/ref" >"$T/ref.snap"
[ "$(sqlite3 "$T/ref/dataset.db" "SELECT max(n_patches) FROM slides")" -gt 70 ] || no "slides too small for batch kills"
[ "$(sqlite3 "$T/ref/dataset.db" "SELECT count(*) FROM predictions")" -gt 0 ] || no "no predictions in the reference"

# rerun until done (a rerun may itself be killed by the same fault: the fault is only set on the first)
finish() {
    d=$1 what=$2 i=0
    while [ $i -lt 5 ]; do
        "$B" $RUN --out "$d" 2>>"$T/rerun.err" && break
        i=$((i + 1))
    done
    [ $i -lt 5 ] || { no "$what: reruns never finished: $(tail -3 "$T/rerun.err")"; return; }
    snapshot "$d" >"$T/got.snap"
    if ! cmp -s "$T/ref.snap" "$T/got.snap"; then
        no "$what: the resumed run differs from the uninterrupted one"
        diff "$T/ref.snap" "$T/got.snap" | cut -c1-200 | head -8
    fi
    "$B" db "$d/dataset.db" check >"$T/chk" 2>&1 || no "$what: db check: $(cat "$T/chk")"
}
killed() { # dir, what, then env assignments for the first run
    d=$1 what=$2
    shift 2
    env "$@" "$B" $RUN --out "$d" 2>/dev/null
    rc=$?
    [ $rc -eq 137 ] || [ $rc -gt 128 ] || no "$what: the first run was not killed (exit $rc)"
    finish "$d" "$what"
}

n=0
for k in after-slide:1 after-slide:3; do
    n=$((n + 1)); killed "$T/k$n" "MAGPIE_RUN_KILL=$k" MAGPIE_RUN_KILL=$k
done
for k in batch:1 in-batch:2 before-finish; do
    n=$((n + 1)); killed "$T/k$n" "MAGPIE_TILER_KILL=$k" MAGPIE_TILER_KILL=$k
done
n=$((n + 1)); killed "$T/k$n" "MAGPIE_INFER_KILL=before-json" MAGPIE_INFER_KILL=before-json
# in the middle of a write: the dataset (WAL), a heatmap file, a thumbnail, status.csv
for spec in "dataset.db:60000" "dataset.db:300000" "heatmap.tif:300" "probability.tif:100" "thumbs/:5000" \
            "status.csv:100" "report.html:5000"; do
    n=$((n + 1))
    killed "$T/k$n" "faultshim kill in $spec" MP_FAULT=kill MP_FAULT_PATH="${spec%%:*}" MP_FAULT_BYTES="${spec##*:}" LD_PRELOAD="$SHIM"
done
# at random moments (the kill may land anywhere, or after the end: then there is nothing to resume)
for ms in 500 1500 3000; do
    n=$((n + 1))
    "$B" $RUN --out "$T/k$n" 2>/dev/null &
    bg=$!
    sleep "$(echo "$ms" | awk '{print $1 / 1000}')"
    kill -9 $bg 2>/dev/null
    wait $bg 2>/dev/null
    bg=""
    finish "$T/k$n" "kill -9 after $ms ms"
done

# a folder whose run is going (its dataset's lock held) is refused at once, and nothing changes
mkdir -p "$T/busy"
flock -o "$T/busy/dataset.db.tile-lock" sleep 30 >/dev/null 2>&1 &
bg=$!
i=0
while [ $i -lt 50 ] && flock -n -o "$T/busy/dataset.db.tile-lock" true 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
"$B" $RUN --out "$T/busy" 2>"$T/e"; rc=$?
kill $bg 2>/dev/null; wait $bg 2>/dev/null
bg=""
[ $rc -eq 2 ] || no "a run on a busy folder: exit $rc, want 2"
grep -q "^magpie: error: $T/busy/dataset.db: another magpie tile is writing to this dataset" "$T/e" || no "busy folder message: $(cat "$T/e")"
[ -e "$T/busy/dataset.db" ] && no "a refused run created the dataset"
finish "$T/busy" "a run after the folder was busy"
echo "kill points checked: $n"
exit $fail
