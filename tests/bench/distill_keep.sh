#!/bin/sh
# bench/distill/keep.py: a WORKDIR's finished cells go into a ledger (evaluations, training output,
# times, PyTorch rows; no checkpoint), a cell still training stays out, a later run adds the rows
# a kept cell lacks, and a WORKDIR of another recipe is refused with a one-line error.
set -u
T=$(mktemp -d /tmp/mp_distill_keep.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
no() { echo "FAIL: $*"; fail=1; }
KEEP="$MAGPIE_SRC/bench/distill/keep.py"
row() { # DIR ROW BACC
    mkdir -p "$1"
    echo "{\"balanced_accuracy\":{\"value\":$3,\"ci\":[0,1]}}" > "$1/$2.eval.json"
    echo "$1/$2.mpk: 40 epochs (epoch 15)" > "$1/$2.train.txt"
    echo '{"epoch":1}' > "$1/$2.log.jsonl"
    echo "x" > "$1/$2.mpk"
    echo "$2 12.5" >> "$1/times.txt"
}
cfg='{"quick": 0, "data_seeds": "11,12", "train_seeds": "1", "regimes": "mild", "dev_data_seeds": "1",
 "dataset": "", "teacher_mag": 10, "student_mag": 1.25, "sweep": 0, "at_40x": 0, "slides": 318, "threads": 2, "recipe": 2}'
W=$T/w L=$T/ledger
mkdir -p "$W" "$L"
echo "$cfg" > "$W/config.json"
echo "machine A" > "$W/machine.txt"
for r in teacher baseline rbd all_labels; do row "$W/mild/d11/t1" $r 0.9; done
for r in teacher baseline; do row "$W/mild/d12/t1" $r 0.9; done # still training
mkdir -p "$W/mild/d11/t1/torch"
echo '{"teacher":{"balanced_accuracy":0.98}}' > "$W/mild/d11/t1/torch/results.json"
echo "teacher epoch 1" > "$W/mild/d11/t1/torch/train.txt"
touch "$W/mild/d11/t1/torch/.done"
python3 "$KEEP" "$W" "$L" > "$T/out" 2>&1 || no "keep.py: $(cat "$T/out")"
grep -qx "kept mild/d11/t1" "$T/out" || no "the finished cell is not reported kept: $(cat "$T/out")"
for f in teacher.eval.json rbd.train.txt all_labels.log.jsonl times.txt torch/results.json torch/train.txt; do
    [ -f "$L/mild/d11/t1/$f" ] || no "the ledger lacks mild/d11/t1/$f"
done
[ -e "$L/mild/d11/t1/teacher.mpk" ] && no "a checkpoint was copied into the ledger"
[ -e "$L/mild/d12" ] && no "a cell still training was kept"
grep -q '"data_seeds": "11"' "$L/config.json" || no "ledger config: $(cat "$L/config.json")"
grep -q "machine A" "$L/machines.txt" || no "machines.txt lacks the WORKDIR's machine"
# a second WORKDIR: the PyTorch rows of a kept cell that had none, and the unfinished cell now done
W2=$T/w2
mkdir -p "$W2"
echo "$cfg" > "$W2/config.json"
rm -rf "$L/mild/d11/t1/torch"
for r in teacher baseline rbd all_labels; do row "$W2/mild/d11/t1" $r 0.9; done
mkdir -p "$W2/mild/d11/t1/torch"
echo '{"teacher":{"balanced_accuracy":0.97}}' > "$W2/mild/d11/t1/torch/results.json"
echo "torch 300" >> "$W2/mild/d11/t1/times.txt"
touch "$W2/mild/d11/t1/torch/.done"
for r in teacher baseline rbd all_labels; do row "$W2/mild/d12/t1" $r 0.8; done
python3 "$KEEP" "$W2" "$L" > "$T/out" 2>&1 || no "keep.py, second WORKDIR: $(cat "$T/out")"
grep -qx "kept mild/d11/t1 (+PyTorch rows)" "$T/out" || no "PyTorch rows not added to a kept cell: $(cat "$T/out")"
grep -q 0.97 "$L/mild/d11/t1/torch/results.json" || no "the added PyTorch rows are not the second WORKDIR's"
grep -qx "torch 300" "$L/mild/d11/t1/times.txt" || no "the PyTorch time is not in the kept cell's times.txt"
[ -f "$L/mild/d12/t1/all_labels.eval.json" ] || no "the finished second cell was not kept"
grep -q '"data_seeds": "11,12"' "$L/config.json" || no "ledger config after the second keep: $(cat "$L/config.json")"
# PyTorch rows without .done (interrupted) are not kept
W3=$T/w3
mkdir -p "$W3"
echo "$cfg" > "$W3/config.json"
for r in teacher baseline rbd all_labels; do row "$W3/mild/d12/t1" $r 0.8; done
mkdir -p "$W3/mild/d12/t1/torch"
echo '{"teacher":{"balanced_accuracy":0.5}}' > "$W3/mild/d12/t1/torch/results.json"
python3 "$KEEP" "$W3" "$L" > "$T/out" 2>&1 || no "keep.py, third WORKDIR: $(cat "$T/out")"
[ -e "$L/mild/d12/t1/torch" ] && no "an interrupted PyTorch run was kept"
# another recipe: refused, the ledger untouched
W4=$T/w4
mkdir -p "$W4"
echo "$cfg" | sed 's/"recipe": 2/"recipe": 1/' > "$W4/config.json"
for r in teacher baseline rbd all_labels; do row "$W4/mild/d13/t1" $r 0.7; done
if python3 "$KEEP" "$W4" "$L" > "$T/out" 2>&1; then no "a WORKDIR of recipe 1 was kept into a recipe-2 ledger"; fi
grep -qx "keep.py: $L holds cells with recipe = 2, $W4 has 1" "$T/out" || no "recipe mismatch message: $(cat "$T/out")"
[ -e "$L/mild/d13" ] && no "a refused WORKDIR's cell reached the ledger"
exit $fail
