#!/bin/sh
# samebytes.sh MAGPIE WORKDIR: run one small fixed pipeline and print a hash per output, so a
# refactor can show it changed no bytes: run it on the old and the new binary and diff the two.
#   sh tools/samebytes.sh build-old/pipelines/magpie /tmp/a > a.txt
#   sh tools/samebytes.sh build/pipelines/magpie /tmp/b > b.txt && diff a.txt b.txt
# Everything runs with one thread and fixed seeds. Fields that hold times or paths (timing in
# prediction.json and the epoch log, created_at columns) are dropped before hashing; nothing else.
set -eu
M=$(realpath "$1")
W=$2
rm -rf "$W"; mkdir -p "$W"; cd "$W"
q() { "$@" >>log.txt 2>&1 || { echo "failed: $*" >&2; tail -5 log.txt >&2; exit 2; }; }
h() { sha256sum "$@" | awk '{print $1}'; }

q "$M" synth slides --slides 6 --patients 6 --width 4096 --height 3072 --mpp 0.5 --seed 7 --jobs 1
q "$M" tile data.db slides/*.tiff --mags 10,1.25 --size 64 --jobs 1 -q
q "$M" db data.db labels import slides/slides.csv slides/*.geojson -q
q "$M" db data.db split --by patient --ratios 0.5,0.25,0.25 --seed 3 --stratify none
T="--threads 1 --seed 5 --batch 16 --progress none"
q "$M" train data.db --method supervised --mag 10 --epochs 2 $T --out teacher.mpk
q "$M" train data.db --method supervised --mag 1.25 --epochs 2 --stop-after 1 $T --out resumed.mpk
q "$M" train data.db --method supervised --mag 1.25 --epochs 2 --resume $T --out resumed.mpk
q "$M" train data.db --method crckd --mag 1.25 --epochs 2 --K 64 $T --out crckd.mpk
q "$M" train data.db --method rbd --mag 1.25 --teacher teacher.mpk --epochs 2 --teacher-views 2 --teacher-cache tc.bin $T --out rbd.mpk
q "$M" train data.db --method rbd --mag 1.25 --teacher teacher.mpk --epochs 2 --teacher-views 0 $T --out rbdlive.mpk
q "$M" train data.db --method rbd+crckd --mag 1.25 --teacher teacher.mpk --epochs 2 --K 64 --teacher-views 2 --teacher-cache tc.bin $T --out rc.mpk
q "$M" eval data.db rbd.mpk --split test --json --threads 1 --bootstrap 200
"$M" eval data.db rbd.mpk --split test --json --threads 1 --bootstrap 200 >eval.json 2>>log.txt
q "$M" infer rbd.mpk slides/synth_000.tiff --out heat --threads 1 -q

for t in $(sqlite3 data.db "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"); do
  # every column but the clock and the work directory's absolute path
  cols=$(sqlite3 data.db "SELECT group_concat('\"' || name || '\"') FROM pragma_table_info('$t')
    WHERE name NOT IN ('path', 'source', 'started_at', 'finished_at', 'imported_at', 'created_at')")
  echo "db $t $(sqlite3 data.db "SELECT $cols FROM \"$t\"" | h)"
done
for f in teacher resumed crckd rbd rbdlive rc; do
  echo "ckpt $f $(h $f.mpk) last $(h $f.last.mpk)"
  # the epoch log without its time fields
  echo "log $f $(jq -c 'del(.seconds, .img_per_s)' $f.log.jsonl | h)"
done
echo "teacher-cache $(h tc.bin)"
echo "eval $(jq -S 'del(.inference_seconds)' eval.json | h)"
for f in heat/synth_000/*; do
  case $f in
  *.json) echo "infer $(basename $f) $(jq -S 'del(.. | .timing?, .seconds?, .time?, .elapsed?, .created?, .created_at?)' $f | h)";;
  *) echo "infer $(basename $f) $(h $f)";;
  esac
done
