"""Writes the interop goldens under tests/nn/golden/ (run offline with Debian's python3-torch:
/usr/bin/python3 tools/golden_interop.py):
  interop_tensors.safetensors  tensors of every dtype magpie reads, values the C test recomputes
  interop_*.npy                .npy files from numpy: float32/int64 good ones, float64, Fortran order,
                               big-endian (refused with a message)
With --verify MAGPIE_BIN it also round-trips a state_dict through `magpie model import/export`
and checks torch's load_state_dict accepts the result with equal values."""
import os, sys, subprocess, tempfile
import numpy as np
import torch
import torch.nn as nn
sys.path.insert(0, os.path.dirname(__file__))
import st_writer

HERE = os.path.dirname(os.path.abspath(__file__))
GOLD = os.path.join(HERE, "..", "tests", "nn", "golden")


def tensors():
    a = torch.arange(6, dtype=torch.float32).reshape(2, 3) / 4 - 0.5
    conv = (torch.arange(4 * 3 * 3 * 3, dtype=torch.float32).reshape(4, 3, 3, 3) - 50) / 8
    return {
        "a": a,
        "conv.weight": conv,
        "scalar": torch.tensor(2.5),
        "bn.num_batches_tracked": torch.tensor(123456789012, dtype=torch.int64),
        "half": torch.tensor([0.5, -2.0, 65504.0, 2.0 ** -24, float("inf")], dtype=torch.float16),
        "bf": torch.tensor([1.0, -3.140625, 2.0 ** 100], dtype=torch.bfloat16),
        "d": torch.tensor([[1.0 / 3, -1e-3], [1e10, 0.0]], dtype=torch.float64),
        "i32": torch.tensor([-7, 0, 7], dtype=torch.int32),
        "empty": torch.zeros(0, 3),
    }


def norm(kind, c):
    return nn.GroupNorm(32, c) if kind == "gn" else nn.BatchNorm2d(c)


class Block(nn.Module):
    """torch_resnet_gn.py's BasicBlock (same attribute names), with the norm as a choice."""
    def __init__(s, cin, cout, stride, kind):
        super().__init__()
        s.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False); s.n1 = norm(kind, cout)
        s.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False); s.n2 = norm(kind, cout)
        s.sc = None
        if stride != 1 or cin != cout:
            s.sc = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), norm(kind, cout))

    def forward(s, x):
        y = torch.relu(s.n1(s.c1(x))); y = s.n2(s.c2(y))
        return torch.relu(y + (x if s.sc is None else s.sc(x)))


class ResNet(nn.Module):
    """torch_resnet_gn.ResNetGN generalised to blocks per stage and BatchNorm; same state_dict names."""
    def __init__(s, ncls, widths, blocks, kind="gn", in_ch=3):
        super().__init__()
        s.stem = nn.Sequential(nn.Conv2d(in_ch, widths[0], 7, 2, 3, bias=False), norm(kind, widths[0]), nn.ReLU(),
                               nn.MaxPool2d(3, 2, 1))
        layers, cin = [], widths[0]
        for i, (w, nb) in enumerate(zip(widths, blocks)):
            for j in range(nb):
                layers.append(Block(cin, w, 2 if i > 0 and j == 0 else 1, kind)); cin = w
        s.layers = nn.Sequential(*layers)
        s.fc = nn.Linear(cin, ncls)

    def forward(s, x):
        f = s.layers(s.stem(x))
        return s.fc(f.mean((2, 3))), f


def randomise_norms(m, g):
    """Default init leaves norm affine at 1/0 and BN stats at 0/1; perturb them so they are tested."""
    for mod in m.modules():
        if isinstance(mod, (nn.GroupNorm, nn.BatchNorm2d)):
            with torch.no_grad():
                mod.weight.copy_(1 + 0.2 * torch.randn(mod.weight.shape, generator=g))
                mod.bias.copy_(0.1 * torch.randn(mod.bias.shape, generator=g))
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.copy_(0.1 * torch.randn(mod.running_mean.shape, generator=g))
                mod.running_var.copy_(0.5 + torch.rand(mod.running_var.shape, generator=g))
                mod.num_batches_tracked.fill_(7)


def write_model_goldens():
    """GN model (widths 32x4, blocks 1,2,1,1, 3 classes): weights, a 2x3x64x64 batch, labels, eval
    logits and cross-entropy gradients (train mode). BN model (widths 8,16): weights, eval logits."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    m = ResNet(3, (32, 32, 32, 32), (1, 2, 1, 1))
    randomise_norms(m, g)
    with torch.no_grad():
        m.fc.weight.mul_(8)  # spread the logits so the comparison is not against near-constants
    # 64 px: the last map is 2x2, so GroupNorm (one channel per group here) still sees the input
    x = torch.randn(2, 3, 64, 64, generator=g)
    y = torch.tensor([2, 0], dtype=torch.int64)
    st_writer.save(os.path.join(GOLD, "interop_model.safetensors"), m.state_dict(), {"format": "pt"})
    np.save(os.path.join(GOLD, "interop_x.npy"), x.numpy())
    np.save(os.path.join(GOLD, "interop_y.npy"), y.numpy())
    m.eval()
    with torch.no_grad():
        np.save(os.path.join(GOLD, "interop_logits.npy"), m(x)[0].numpy())
    m.train()
    m.zero_grad()
    loss = nn.functional.cross_entropy(m(x)[0], y)
    loss.backward()
    grads = {n: p.grad for n, p in m.named_parameters()}
    st_writer.save(os.path.join(GOLD, "interop_grads.safetensors"), grads, {"loss": repr(loss.item())})
    bn = ResNet(4, (8, 16), (1, 1), kind="bn")
    randomise_norms(bn, g)
    bn.eval()
    st_writer.save(os.path.join(GOLD, "interop_bn_model.safetensors"), bn.state_dict(), {"format": "pt"})
    with torch.no_grad():
        np.save(os.path.join(GOLD, "interop_bn_logits.npy"), bn(x)[0].numpy())


def verify(magpie):
    """Offline: state_dict -> import -> export -> torch load_state_dict(strict) gives equal tensors."""
    ok = True
    with tempfile.TemporaryDirectory() as d:
        for src in ("interop_model.safetensors", "interop_bn_model.safetensors"):
            sd, _ = st_writer.load(os.path.join(GOLD, src))
            ck, out = os.path.join(d, "m.mpk"), os.path.join(d, "re.safetensors")
            subprocess.run([magpie, "model", "import", os.path.join(GOLD, src), "--out", ck], check=True)
            subprocess.run([magpie, "model", "export", ck, out], check=True)
            back, meta = st_writer.load(out)
            m = ResNet(sd["fc.weight"].shape[0], *((32, 32, 32, 32), (1, 2, 1, 1)) if "stem.1.running_mean" not in sd
                       else ((8, 16), (1, 1)), kind="gn" if "stem.1.running_mean" not in sd else "bn")
            m.load_state_dict(back, strict=True)
            for k, v in m.state_dict().items():
                same = v.dtype == sd[k].dtype and torch.equal(v, sd[k])
                ok &= same
                if not same:
                    print("MISMATCH", src, k)
            print(src, "round trip through magpie import/export:", "equal" if ok else "DIFFERENT", meta.get("magpie.arch.widths"))
    return ok


def write_goldens():
    st_writer.save(os.path.join(GOLD, "interop_tensors.safetensors"), tensors(), {"format": "pt", "who": "golden_interop.py"})
    x = (np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4) - 40) / 16
    np.save(os.path.join(GOLD, "interop_f32.npy"), x)
    np.save(os.path.join(GOLD, "interop_i64.npy"), np.array([0, 2, 1, -5], dtype=np.int64))
    np.save(os.path.join(GOLD, "interop_f64.npy"), x.astype(np.float64)[:1, :1])
    np.save(os.path.join(GOLD, "interop_fortran.npy"), np.asfortranarray(x[0, 0]))
    np.save(os.path.join(GOLD, "interop_bigendian.npy"), x[0, 0].astype(">f4"))
    print("wrote interop goldens in", os.path.normpath(GOLD))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--verify":
        sys.exit(0 if verify(sys.argv[2]) else 1)
    write_goldens()
    write_model_goldens()
