#!/bin/sh
# Epochs are counted from 1 in training's messages, its log, the checkpoint's meta and `model
# info` (the meta's trained.epoch was 0-based while the log said 1-based); model info gives FLOPs
# at the checkpoint's own input size unless --size asks otherwise (it said 224 for a 28 px
# student); the training curve is written as SVG and as a PNG rendered from it. A run without
# validation labels logged "val_balanced_accuracy":nan, not JSON, so a resume dropped the whole log.
set -u
T=$(mktemp -d /tmp/mp_epochs_cli.XXXXXX)
trap 'rm -rf "$T"' EXIT
B="$MAGPIE_BIN"
fail=0
no() { echo "FAIL: $*"; fail=1; }
want() { grep -qF -- "$1" "$2" || no "want '$1' in $2: $(cat "$2")"; }

# a small labelled, split dataset (what magpie demo built before it became the whole product)
{ "$B" synth "$T/d/slides" --slides 6 --patients 4 --width 4096 --height 3072 --seed 1 -q &&
    "$B" tile "$T/d/dataset.db" "$T"/d/slides/*.tiff --mags 10,1.25 -q &&
    "$B" db "$T/d/dataset.db" labels import "$T/d/slides/slides.csv" "$T"/d/slides/*.geojson &&
    "$B" db "$T/d/dataset.db" split --by patient --ratios 0.5,0.25,0.25 --stratify none --seed 1; } >/dev/null 2>"$T/e" ||
    { echo "FAIL: dataset setup: $(cat "$T/e")"; exit 1; }
D="$T/d/dataset.db"
"$B" train "$D" --method supervised --mag 1.25 --out "$T/m.mpk" --epochs 3 --stop-after 2 --progress=none >"$T/o" 2>&1 ||
    { echo "FAIL: train: $(cat "$T/o")"; exit 1; }
want "epoch 1/3:" "$T/o"
want "epoch 2/3:" "$T/o"
grep -q "epoch 3/3" "$T/o" && no "--stop-after 2 ran a third epoch: $(cat "$T/o")"
[ "$(grep -o '"epoch":[0-9]*' "$T/m.log.jsonl" | tr '\n' ' ')" = '"epoch":1 "epoch":2 ' ] || no "log epochs: $(cat "$T/m.log.jsonl")"
"$B" model info "$T/m.last.mpk" >"$T/i" 2>&1 || no "model info: $(cat "$T/i")"
want "training      2 epochs run" "$T/i"
want "meta          trained.epoch = 2" "$T/i"   # no validation labels here: the last epoch is the best
want "best epoch 2 (1-based)" "$T/i"
want "GFLOP per 28x28 image" "$T/i"
want "the checkpoint's input size" "$T/i"
"$B" model info "$T/m.mpk" --size 224 >"$T/i" 2>&1 || no "model info --size: $(cat "$T/i")"
want "GFLOP per 224x224 image" "$T/i"
"$B" model info "$T/m.last.mpk" --json >"$T/i" 2>&1 || no "model info --json: $(cat "$T/i")"
want '"epochs_run": 2' "$T/i"
want '"best_epoch": 2' "$T/i"
want '"size": 28' "$T/i"
"$B" train "$D" --method supervised --mag 1.25 --out "$T/m.mpk" --epochs 3 --resume --progress=none >"$T/o" 2>&1 ||
    no "resume: $(cat "$T/o")"
want "epoch 3/3:" "$T/o"
[ "$(grep -o '"epoch":[0-9]*' "$T/m.log.jsonl" | tr '\n' ' ')" = '"epoch":1 "epoch":2 "epoch":3 ' ] || no "log epochs after resume: $(cat "$T/m.log.jsonl")"
"$B" model info "$T/m.last.mpk" >"$T/i" 2>&1
want "training      3 epochs run" "$T/i"
for f in m.svg m.png; do [ -s "$T/$f" ] || no "no $f beside the checkpoint"; done
want "epoch (1-based)" "$T/m.svg"
want "training curve: supervised @ 1.25x, m.mpk" "$T/m.svg"
[ "$(head -c 8 "$T/m.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || no "m.png is not a PNG"
# --warmup: a linear LR ramp for supervised/rbd; crckd's one-cycle has its own, so it is refused
"$B" train "$D" --method supervised --mag 1.25 --out "$T/w.mpk" --epochs 1 --warmup 3 --progress=none >"$T/o" 2>&1 ||
    no "--warmup 3: $(cat "$T/o")"
[ -s "$T/w.mpk" ] || no "no checkpoint with --warmup"
"$B" train "$D" --method crckd --mag 1.25 --out "$T/w2.mpk" --warmup 3 >"$T/o" 2>&1 && no "crckd --warmup accepted"
want "magpie: error: train: --warmup is for rbd and supervised (crckd warms up in its one-cycle schedule) (see magpie train --help)" "$T/o"
"$B" train "$D" --method supervised --mag 1.25 --out "$T/w2.mpk" --warmup -1 >"$T/o" 2>&1 && no "--warmup -1 accepted"
want "magpie: error: train: bad value for --warmup: '-1'" "$T/o"
exit $fail
