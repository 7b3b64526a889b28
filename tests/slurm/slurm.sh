#!/bin/sh
# tests/slurm/slurm.sh DIFF — the SLURM scale-out on a real one-node cluster: munged, slurmctld
# and slurmd started here, configured in a temporary folder (root; no cgroups:
# proctrack/linuxproc, task/none, select/cons_tres with CR_CPU). docs/slurm.md's two sbatch
# scripts, extracted from the page as they stand, run a 2-task array over a small synthetic
# manifest (tile + infer) and the dependent merge + report job; the merged dataset must equal one
# local `magpie run` over the whole manifest (DIFF = tests/db/dataset_diff.py, row by row), and
# the report must cover every slide. Where SLURM or munge cannot start (not root, packages
# missing, container limits) it says why and skips (exit 77). Every wait is bounded; the daemons
# are stopped however the test ends.
set -u
DIFF=$1
M="$MAGPIE_BIN"
SRC="$MAGPIE_SRC"
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root (slurmd runs jobs as their owner; munged and the daemons as root here)"
for b in munged slurmctld slurmd sbatch squeue scontrol sinfo scancel; do
    command -v $b >/dev/null 2>&1 || skip "$b not found (Debian packages slurm-wlm and munge: tools/install-deps.sh)"
done
T=$(mktemp -d /tmp/mp_slurm.XXXXXX)
chmod 711 "$T" # munged wants its socket's folder searchable by all
export SLURM_CONF="$T/slurm.conf"
cleanup() {
    if [ -s "$T/slurmctld.pid" ]; then
        timeout 10 scancel --full --quiet --partition=magpie 2>/dev/null
        timeout 10 scontrol shutdown >/dev/null 2>&1
    fi
    for p in slurmd slurmctld munged; do
        [ -s "$T/$p.pid" ] || continue
        pid=$(cat "$T/$p.pid")
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do
            [ $i -eq 0 ] && kill "$pid" 2>/dev/null
            sleep 0.2
            i=$((i + 1))
        done
        kill -9 "$pid" 2>/dev/null
    done
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 2' INT TERM HUP
fail=0
no() { echo "FAIL: $*"; fail=1; }
logs() { for f in "$T"/munged.log "$T"/slurmctld.log "$T"/slurmd.log; do [ -e "$f" ] && { echo "--- $f"; tail -n 15 "$f"; }; done; }

# munge: a fresh key, socket and logs in $T
dd if=/dev/urandom of="$T/munge.key" bs=1024 count=1 2>/dev/null
chmod 400 "$T/munge.key"
timeout 20 munged --key-file="$T/munge.key" --socket="$T/munge.sock" --pid-file="$T/munged.pid" \
    --log-file="$T/munged.log" --seed-file="$T/munged.seed" --force 2>"$T/munged.err" ||
    skip "munged does not start here: $(cat "$T/munged.err" | tr '\n' ' ')"
timeout 10 munge -S "$T/munge.sock" -n 2>/dev/null | timeout 10 unmunge -S "$T/munge.sock" >/dev/null 2>&1 ||
    skip "munge credentials do not round-trip: $(tail -n 3 "$T/munged.log" | tr '\n' ' ')"

# slurm: this host as the one node, its hardware as slurmd sees it, two free ports
node=$(timeout 20 slurmd -C 2>/dev/null | grep '^NodeName=') || skip "slurmd -C fails here"
host=$(hostname -s)
cpus=$(echo "$node" | sed -n 's/.* CPUs=\([0-9]*\).*/\1/p')
ports=$(python3 -c "
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(('127.0.0.1', 0))
print(' '.join(str(s.getsockname()[1]) for s in ss))") || skip "no free TCP ports"
set -- $ports
mkdir -p "$T/state" "$T/spool" "$T/out"
cat >"$SLURM_CONF" <<EOF
ClusterName=magpietest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$1
SlurmdPort=$2
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$T/munge.sock
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=600
KillWait=5
$(echo "$node" | sed "s/^NodeName=[^ ]*/NodeName=$host/") NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=magpie Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
timeout 30 slurmctld -f "$SLURM_CONF" 2>"$T/ctld.err" || { logs; skip "slurmctld does not start here: $(cat "$T/ctld.err")"; }
timeout 30 slurmd -f "$SLURM_CONF" 2>"$T/slurmd.err" || { logs; skip "slurmd does not start here: $(cat "$T/slurmd.err")"; }
i=0
until [ "$(timeout 10 sinfo -h -n "$host" -o %t 2>/dev/null)" = idle ]; do
    i=$((i + 1))
    [ $i -gt 60 ] && { logs; skip "the node did not come up idle within 60 s: $(timeout 10 sinfo 2>&1 | tr '\n' ' ')"; }
    sleep 1
done
echo "slurm: node $host up ($cpus CPUs), controller on port $1"

# the inputs: four small synthetic slides in a manifest with patients, labels and splits, and a
# tiny model (a 3-class 1.25x student, random weights: the test is about plumbing)
"$M" synth "$T/s" --slides 4 --width 2048 --height 2048 --mpp 0.5 --seed 21 -q || { echo "FAIL: synth"; exit 1; }
{
    echo "slide,patient,label,split"
    echo "s/synth_000.tiff,p0,Stroma,train"
    echo "s/synth_001.tiff,p1,Lymphocyte,train"
    echo "s/synth_002.tiff,p0,Stroma,val"
    echo "s/synth_003.tiff,p2,Lymphocyte,test"
} >"$T/manifest.csv"
"$M" model init --out "$T/r.mpk" --classes 3 --widths 32,32,32,32 >/dev/null &&
"$M" model export "$T/r.mpk" "$T/r.safetensors" >/dev/null &&
"$M" model import "$T/r.safetensors" --out "$T/m.mpk" --mag 1.25 --size 28 --mean 0,0,0 --std 1,1,1 >/dev/null ||
    { echo "FAIL: model setup"; exit 1; }

# the local reference
"$M" run "$T/manifest.csv" --out "$T/local" --model "$T/m.mpk" --threads 2 --progress none -q ||
    no "local magpie run: exit $?"

# docs/slurm.md's scripts, as the page has them
for f in magpie-shards.sbatch magpie-merge.sbatch; do
    awk -v tag="<!-- slurm-test: $f -->" '$0 == tag {on = 1; next} on && /^```bash$/ {inside = 1; next}
        inside && /^```$/ {exit} inside {print}' "$SRC/docs/slurm.md" >"$T/$f"
    [ -s "$T/$f" ] || { echo "FAIL: no $f in docs/slurm.md"; exit 1; }
done
cd "$T/out" || exit 1
export MANIFEST="$T/manifest.csv" OUT="$T/out" MODEL="$T/m.mpk" MAGPIE="$M"
# the page's submission, with a small array and what this node can give
jid=$(timeout 30 sbatch --parsable --array=0-1 --cpus-per-task=1 --mem=500M "$T/magpie-shards.sbatch") ||
    { logs; echo "FAIL: sbatch of the array"; exit 1; }
mid=$(timeout 30 sbatch --parsable --dependency=afterok:$jid --mem=500M "$T/magpie-merge.sbatch") ||
    { logs; echo "FAIL: sbatch of the merge job"; exit 1; }
echo "slurm: array job $jid, merge job $mid"
# wait for both (bounded: a hung job must not hang CI)
i=0
while [ -n "$(timeout 10 squeue -h -j "$jid,$mid" -o %i 2>/dev/null)" ]; do
    i=$((i + 1))
    if [ $i -gt 600 ]; then
        no "jobs still queued or running after 600 s: $(timeout 10 squeue 2>&1 | tr '\n' ' ')"
        logs
        exit 1
    fi
    sleep 1
done
for f in "$T"/out/*.log; do echo "--- $f"; cat "$f"; done | head -n 60 >"$T/joblogs"
state() { timeout 10 scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n 's/^JobState=//p' | sort -u | tr '\n' ' '; }
[ "$(state "$jid")" = "COMPLETED " ] || no "array job $jid: $(state "$jid") $(cat "$T/joblogs")"
[ "$(state "$mid")" = "COMPLETED " ] || no "merge job $mid: $(state "$mid") $(cat "$T/joblogs")"

# each task ran its own slice; together they are the manifest, once
n0=$(sqlite3 "$T/out/shard-0/dataset.db" "SELECT count(*) FROM slides" 2>/dev/null || echo 0)
n1=$(sqlite3 "$T/out/shard-1/dataset.db" "SELECT count(*) FROM slides" 2>/dev/null || echo 0)
[ $((n0 + n1)) -eq 4 ] || no "shards hold $n0 + $n1 slides, want 4 in all"
[ "$n0" -gt 0 ] && [ "$n1" -gt 0 ] || no "a shard is empty ($n0, $n1): the test's slides should split 2+2 or 3+1"
python3 "$DIFF" "$T/local/dataset.db" "$T/out/merged/dataset.db" >"$T/diff" 2>&1 ||
    no "the merged dataset differs from a local run: $(cat "$T/diff")"
cls() { sqlite3 "$1" "SELECT group_concat(id || ':' || name, ' ') FROM (SELECT * FROM classes ORDER BY id)"; }
[ "$(cls "$T/out/merged/dataset.db")" = "$(cls "$T/local/dataset.db")" ] ||
    no "class ids: merged $(cls "$T/out/merged/dataset.db"), local $(cls "$T/local/dataset.db")"
[ -s "$T/out/merged/report.html" ] || no "no merged report"
for s in synth_000 synth_001 synth_002 synth_003; do
    grep -q "$s" "$T/out/merged/report.html" 2>/dev/null || no "the merged report does not show $s"
done
[ $fail -eq 0 ] && echo "slurm: 2-task array + merge on a one-node SLURM equal a local magpie run ($(cat "$T/diff"))"
exit $fail
