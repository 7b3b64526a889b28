"""bench/nn/bench.py — magpie's NN engine against PyTorch, side by side in the same run, at each
vector level this machine can run. Cells: ResNet-GN at 224 px and 28 px, batch 32 and 256, 1 and
2 threads, training and inference. Each cell runs bench_nn (magpie) and torch_bench.py (the
peer) alternately; the median step time of each gives img/s; plus the OpenBLAS sgemm peak
measured in the same run.
    /usr/bin/python3 bench/nn/bench.py [--build build] [--quick] [--levels avx512,avx2] [--out FILE]
A level below the machine's emulates a CPU that has only that level, on both sides: magpie gets
MAGPIE_KERNELS=L and OpenBLAS's kernels for L (OPENBLAS_CORETYPE), PyTorch gets oneDNN's
(ONEDNN_MAX_CPU_ISA) and ATen's (ATEN_CPU_CAPABILITY). The cache sizes, gather and shuffle
speeds stay this CPU's, so it approximates a real AVX2 machine rather than reproducing one.
--out FILE writes the markdown tables to FILE (BENCHMARKS.md is edited by hand)."""
import argparse, json, os, re, statistics, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
ORDER = ["generic", "avx2", "avx512"]
# per level: the environment of magpie and of the peer
LEVEL_ENV = {
    "avx512": ({}, {}),
    "avx2": ({"MAGPIE_KERNELS": "avx2", "OPENBLAS_CORETYPE": "Haswell"},
             {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}),
    "generic": ({"MAGPIE_KERNELS": "generic", "OPENBLAS_CORETYPE": "Nehalem"},
                {"ONEDNN_MAX_CPU_ISA": "SSE41", "ATEN_CPU_CAPABILITY": "default"}),
}


def run(cmd, extra):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", **extra)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode:
        sys.exit(f"{' '.join(cmd)} failed: {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_level(a, exe, torch_py, level):
    ours_env, peer_env = LEVEL_ENV[level]
    peak = {}
    for t in (1, 2):
        g = []
        for _ in range(3):
            # per CPU-second on 1 thread, like the 1-thread cells; wall on 2
            g += run([exe, "--gemm-peak", "--threads", str(t), "--steps", "3"], ours_env)["gflops_cpu" if t == 1 else "gflops"]
        peak[t] = statistics.median(g)
        print(f"[{level}] sgemm peak, {t} thread(s): {peak[t]:.1f} GFLOP/s (median)", flush=True)
    rows, info = [], {}
    batches = (32,) if a.quick else (32, 256)
    for size in (224, 28):
        for batch in batches:
            for mode in ("train", "infer"):
                for t in (1, 2):
                    work = batch * size * size * (3 if mode == "train" else 1)
                    steps = max(1, min(40, int(3.0e6 / work)))  # the tiny cells (a few ms a step) need more samples
                    # the small cells' steps take a few ms, which the host's noise moves by ±20% from
                    # one minute to the next: several alternations, the median over all their steps
                    rounds = 1 if work > 4e6 else 3 if a.quick else 4
                    ours, theirs, flops = [], [], 0
                    # 1 thread: CPU seconds per step (robust to a shared, oversubscribed machine);
                    # 2 threads: wall seconds (CPU time would hide poor scaling)
                    key = "cpu" if t == 1 else "sec"
                    for _ in range(rounds):
                        args = ["--size", str(size), "--batch", str(batch), "--threads", str(t), "--steps", str(steps)]
                        if mode == "infer":
                            args.append("--infer")
                        r = run([exe] + args, ours_env)
                        info = {k: r[k] for k in ("kernels", "cpu_kernels", "blas_core")}
                        if r["kernels"] != level:
                            sys.exit(f"bench_nn ran at {r['kernels']}, not {level}")
                        flops = r["flops"]
                        ours += r[key]
                        theirs += run([a.python, torch_py] + args, peer_env)[key]
                    mo, mt = batch / statistics.median(ours), batch / statistics.median(theirs)
                    gf = mo * flops * (3 if mode == "train" else 1) * 1e-9
                    rows.append(dict(size=size, batch=batch, mode=mode, threads=t, magpie=mo, torch=mt,
                                     ratio=mo / mt, gflops=gf, peak=gf / peak[t], n=len(ours)))
                    print(f"[{level}] {size:>4} px  batch {batch:>3}  {mode:<5}  {t} thr: magpie {mo:8.1f} img/s  "
                          f"torch {mt:8.1f} img/s  ratio {mo / mt:5.2f}  {gf:6.1f} GFLOP/s ({100 * gf / peak[t]:.0f}% of peak)",
                          flush=True)
    return rows, peak, info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--quick", action="store_true", help="fewer repeats, batch 32 only")
    ap.add_argument("--levels", help="comma list of avx512, avx2, generic (default: every level this CPU runs)")
    ap.add_argument("--out", help="write the markdown tables here")
    ap.add_argument("--python", default="/usr/bin/python3")
    a = ap.parse_args()
    exe = os.path.join(a.build, "bench", "bench_nn")
    torch_py = os.path.join(HERE, "torch_bench.py")
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = re.search(r"Model name:\s*(.*)", cpu).group(1).strip()
    best = run([exe, "--size", "28", "--batch", "1", "--steps", "1", "--infer"], {})["cpu_kernels"]
    print("machine:", model, f"({os.cpu_count()} CPUs), vector level {best}")
    levels = a.levels.split(",") if a.levels else ORDER[: ORDER.index(best) + 1][::-1]
    for lv in levels:
        if lv not in ORDER or ORDER.index(lv) > ORDER.index(best):
            sys.exit(f"level {lv}: this machine runs {', '.join(ORDER[:ORDER.index(best) + 1])}")
    lines = []
    for lv in levels:
        rows, peak, info = bench_level(a, exe, torch_py, lv)
        env = " ".join(f"{k}={v}" for k, v in LEVEL_ENV[lv][0].items()) or "(defaults)"
        penv = " ".join(f"{k}={v}" for k, v in LEVEL_ENV[lv][1].items()) or "(defaults)"
        lines += [f"### Level {lv} (machine: {model}, {best})", "",
                  f"magpie: {env}, OpenBLAS core {info['blas_core']}; PyTorch {torch_version(a.python)}: {penv}. "
                  f"sgemm peak (1536³): {peak[1]:.1f} GFLOP/s per CPU-second on 1 thread, {peak[2]:.1f} wall on 2.", "",
                  "| input | batch | mode | threads | magpie img/s | PyTorch img/s | ratio | magpie GFLOP/s | % of sgemm peak |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['size']} px | {r['batch']} | {r['mode']} | {r['threads']} | {r['magpie']:.1f} | "
                         f"{r['torch']:.1f} | {r['ratio']:.2f}x | {r['gflops']:.1f} | {100 * r['peak']:.0f}% |")
        miss = [r for r in rows if r["ratio"] < 1.0]
        lines += ["", f"Below 1.0x: {len(miss)} of {len(rows)} cells" +
                  (" (" + "; ".join(f"{r['size']} px b{r['batch']} {r['mode']} {r['threads']} thr {r['ratio']:.2f}x" for r in miss) + ")"
                   if miss else "") + ".", ""]
    text = "\n".join(lines)
    print("\n" + text)
    if a.out:
        open(a.out, "w").write(text)
        print("wrote", a.out)


def torch_version(py):
    return subprocess.run([py, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                          text=True).stdout.strip()


if __name__ == "__main__":
    main()
