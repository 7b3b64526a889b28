"""bench/nn/bench.py — magpie's NN engine against PyTorch, side by side in the same run.
Cells: ResNet-GN at 224 px and 28 px, batch 32 and 256, 1 and 2 threads, training and
inference. Each cell runs bench_nn (magpie) and torch_bench.py (the peer) alternately, the
median step time of each gives img/s; plus the OpenBLAS sgemm peak measured in the same run.
    /usr/bin/python3 bench/nn/bench.py [--build build] [--quick] [--write]
--write replaces the "NN engine" section of BENCHMARKS.md with the table."""
import argparse, json, os, re, statistics, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


def run(cmd):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode:
        sys.exit(f"{' '.join(cmd)} failed: {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--quick", action="store_true", help="fewer repeats, batch 32 only")
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--python", default="/usr/bin/python3")
    a = ap.parse_args()
    exe = os.path.join(a.build, "bench", "bench_nn")
    torch_py = os.path.join(HERE, "torch_bench.py")
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = re.search(r"Model name:\s*(.*)", cpu).group(1).strip()
    print("machine:", model, f"({os.cpu_count()} CPUs)")

    peak = {}
    for t in (1, 2):
        g = []
        for _ in range(3):
            # per CPU-second on 1 thread, like the 1-thread cells; wall on 2
            g += run([exe, "--gemm-peak", "--threads", str(t), "--steps", "3"])["gflops_cpu" if t == 1 else "gflops"]
        peak[t] = statistics.median(g)
        print(f"sgemm peak, {t} thread(s): {peak[t]:.1f} GFLOP/s (median)")

    rows = []
    batches = (32,) if a.quick else (32, 256)
    for size in (224, 28):
        for batch in batches:
            for mode in ("train", "infer"):
                for t in (1, 2):
                    work = batch * size * size * (3 if mode == "train" else 1)
                    steps = max(1, min(40, int(3.0e6 / work)))  # the tiny cells (a few ms a step) need more samples
                    rounds = 1 if work > 4e6 or a.quick else 2
                    ours, theirs, flops = [], [], 0
                    # 1 thread: CPU seconds per step (robust to a shared, oversubscribed machine);
                    # 2 threads: wall seconds (CPU time would hide poor scaling)
                    key = "cpu" if t == 1 else "sec"
                    for _ in range(rounds):
                        args = ["--size", str(size), "--batch", str(batch), "--threads", str(t), "--steps", str(steps)]
                        if mode == "infer":
                            args.append("--infer")
                        r = run([exe] + args)
                        flops = r["flops"]
                        ours += r[key]
                        theirs += run([a.python, torch_py] + args)[key]
                    mo, mt = batch / statistics.median(ours), batch / statistics.median(theirs)
                    gf = mo * flops * (3 if mode == "train" else 1) * 1e-9
                    row = dict(size=size, batch=batch, mode=mode, threads=t, magpie=mo, torch=mt, ratio=mo / mt,
                               gflops=gf, peak=gf / peak[t], n=len(ours))
                    rows.append(row)
                    print(f"{size:>4} px  batch {batch:>3}  {mode:<5}  {t} thr: magpie {mo:8.1f} img/s  "
                          f"torch {mt:8.1f} img/s  ratio {mo / mt:5.2f}  {gf:6.1f} GFLOP/s ({100 * gf / peak[t]:.0f}% of peak)",
                          flush=True)

    def find(size, mode, t, batch):
        for r in rows:
            if (r["size"], r["mode"], r["threads"], r["batch"]) == (size, mode, t, batch):
                return r
    lines = ["## NN engine (bench/nn)", "",
             f"`/usr/bin/python3 bench/nn/bench.py --write` on {model}, {os.cpu_count()} CPUs (shared machine). "
             "ResNet-GN (the RBD network), magpie (C, OpenBLAS pthread) against PyTorch "
             f"{torch_version(a.python)} (oneDNN) running the peer's model, alternately in the same run; "
             "img/s from the median step time (training step = forward, cross-entropy, backward, Adam): "
             "CPU time of the process for 1-thread cells, wall time for 2-thread cells. "
             "GFLOP/s counts 2 FLOPs per multiply-add of convs and fc (training = 3x forward).", "",
             f"OpenBLAS sgemm peak measured in the same run (1536³): {peak[1]:.1f} GFLOP/s per CPU-second on "
             f"1 thread, {peak[2]:.1f} GFLOP/s wall on 2.", "",
             "| input | batch | mode | threads | magpie img/s | PyTorch img/s | ratio | magpie GFLOP/s | % of sgemm peak |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['size']} px | {r['batch']} | {r['mode']} | {r['threads']} | {r['magpie']:.1f} | "
                     f"{r['torch']:.1f} | {r['ratio']:.2f}x | {r['gflops']:.1f} | {100 * r['peak']:.0f}% |")
    lines.append("")
    for t in (1, 2):
        for b in batches:
            s, te = find(28, "infer", t, b), find(224, "infer", t, b)
            if s and te:
                lines.append(f"Student (28 px) vs teacher (224 px) inference, batch {b}, {t} thread(s): magpie "
                             f"{s['magpie'] / te['magpie']:.0f}x more patches/s, PyTorch {s['torch'] / te['torch']:.0f}x "
                             "(the FLOP budget is 64x).")
    lines.append("")
    text = "\n".join(lines)
    print("\n" + text)
    if a.write:
        path = os.path.join(ROOT, "BENCHMARKS.md")
        doc = open(path).read()
        pat = re.compile(r"## NN engine \(bench/nn\)\n.*?(?=\n## |\Z)", re.S)
        doc = pat.sub(lambda _: text.rstrip("\n") + "\n", doc) if pat.search(doc) else doc.rstrip("\n") + "\n\n" + text
        open(path, "w").write(doc)
        print("wrote", path)


def torch_version(py):
    return subprocess.run([py, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                          text=True).stdout.strip()


if __name__ == "__main__":
    main()
