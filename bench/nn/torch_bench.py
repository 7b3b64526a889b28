"""bench/nn/torch_bench.py — the PyTorch side of the NN speed benchmark, cell for cell with
bench_nn.c: the peer's ResNet-GN (../shared/peers/torch_resnet_gn.py, imported unchanged),
training steps (zero_grad, cross-entropy, backward, Adam) or no_grad inference on one
(size, batch, threads) cell. Prints one JSON line of per-step seconds after one warm-up step."""
import argparse, json, os, sys, time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("MAGPIE_PEERS", os.path.join(HERE, "..", "..", "..", "shared", "peers")))
from torch_resnet_gn import ResNetGN  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--size", type=int, default=224)
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--steps", type=int, default=3)
ap.add_argument("--infer", action="store_true")
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
m = ResNetGN()
x = torch.randn(a.batch, 3, a.size, a.size)
y = torch.randint(0, 2, (a.batch,))
opt = torch.optim.Adam(m.parameters(), 1e-3)
lf = torch.nn.CrossEntropyLoss()
train = not a.infer
m.train(train)


def step():
    if train:
        opt.zero_grad()
        lf(m(x)[0], y).backward()
        opt.step()
    else:
        with torch.no_grad():
            m(x)


secs, cpu = [], []
for s in range(-1, a.steps):
    t, c = time.perf_counter(), time.process_time()
    step()
    if s >= 0:
        secs.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
print(json.dumps({"size": a.size, "batch": a.batch, "threads": a.threads, "mode": "train" if train else "infer",
                  "sec": secs, "cpu": cpu}))
