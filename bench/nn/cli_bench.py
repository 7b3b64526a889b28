"""bench/nn/cli_bench.py — `magpie model run` and `model grad` through the CLI (a whole process:
start, checkpoint and .npy read, compute, write) against the same work in PyTorch in-process
(compute only, after a warm-up), both on the same number of threads. ResNet-GN, random weights.
    /usr/bin/python3 bench/nn/cli_bench.py [--build build] [--threads 2] [--repeats 3]
Prints one line per case and a markdown table; ratio = PyTorch seconds / magpie seconds."""
import argparse, os, statistics, subprocess, sys, tempfile, time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.environ.get("MAGPIE_PEERS", os.path.join(ROOT, "..", "shared", "peers")))
from torch_resnet_gn import ResNetGN  # noqa: E402

CASES = [("run", 28, 2048), ("run", 224, 64), ("grad", 28, 256), ("grad", 28, 2048), ("grad", 224, 32)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    exe = os.path.join(a.build, "pipelines", "magpie")
    torch.set_num_threads(a.threads)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        ck = os.path.join(d, "m.mpk")
        subprocess.run([exe, "model", "init", "--out", ck, "--classes", "2", "--seed", "0"], check=True, env=env,
                       capture_output=True)
        m = ResNetGN()
        lf = torch.nn.CrossEntropyLoss()
        for kind, size, n in CASES:
            rng = np.random.default_rng(0)
            x = rng.standard_normal((n, 3, size, size), dtype=np.float32)
            y = rng.integers(0, 2, n).astype(np.int64)
            xp, yp = os.path.join(d, "x.npy"), os.path.join(d, "y.npy")
            np.save(xp, x)
            np.save(yp, y)
            cmd = [exe, "model", kind, ck, xp] + ([os.path.join(d, "o.npy")] if kind == "run" else
                                                  [yp, os.path.join(d, "g.safetensors")]) + ["--threads", str(a.threads)]
            ours = []
            for _ in range(a.repeats):
                t = time.perf_counter()
                subprocess.run(cmd, check=True, env=env, capture_output=True)
                ours.append(time.perf_counter() - t)
            xt, yt = torch.from_numpy(x), torch.from_numpy(y)

            def step():
                if kind == "run":
                    m.eval()
                    with torch.no_grad():
                        m(xt)
                else:
                    m.train()
                    m.zero_grad()
                    out = m(xt)
                    lf(out[0] if isinstance(out, tuple) else out, yt).backward()

            step()  # warm-up
            theirs = []
            for _ in range(a.repeats):
                t = time.perf_counter()
                step()
                theirs.append(time.perf_counter() - t)
            mo, mt = statistics.median(ours), statistics.median(theirs)
            rows.append((kind, size, n, mo, mt))
            print(f"model {kind} {n} x {size} px, {a.threads} threads: magpie CLI {mo:.3f} s, PyTorch in-process "
                  f"{mt:.3f} s, ratio {mt / mo:.2f}x", flush=True)
    print("\n| command | batch | magpie CLI s | PyTorch in-process s | ratio |\n|---|---|---|---|---|")
    for kind, size, n, mo, mt in rows:
        print(f"| model {kind} | {n} x {size} px | {mo:.3f} | {mt:.3f} | {mt / mo:.2f}x |")


if __name__ == "__main__":
    main()
