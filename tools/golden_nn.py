"""Writes the nn engine's PyTorch reference files, tests/nn/golden/{ops,model}_*.bin, that
tests/nn/test_golden*.c and test_model*.c compare against. Offline only (CI has no PyTorch):
    /usr/bin/python3 tools/golden_nn.py          (Debian python3-torch)

File format (little endian), one file per group:
    magic  b"MPGOLD1\\0"  u32 count
    count × { u32 name_len, name (utf-8), u32 dtype (0 = f32, 1 = i32, 2 = f64),
              u32 ndim, u32 dims[ndim], raw data (C order) }
Model weights are not stored (they would not fit the size budget): both sides generate them
with synth(): value j of tensor t = bound · ((h(j, t) mod 2001) − 1000) / 1000 with
h = (j · 2654435761 + t · 40503 + 12345) mod 2³², computed in float64 and cast to float32.
Large gradients are stored as 256 sampled entries (indices j · numel // 256) plus Σ|g|."""
import os, struct, sys
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(1)
torch.manual_seed(0)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "nn", "golden")


class Writer:
    def __init__(self):
        self.items = []

    def add(self, name, t):
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu().numpy()
        t = np.ascontiguousarray(t)
        if t.dtype in (np.float32,):
            code = 0
        elif t.dtype in (np.int32, np.int64):
            t, code = t.astype(np.int32), 1
        elif t.dtype == np.float64:
            code = 2
        else:
            raise TypeError(f"{name}: {t.dtype}")
        self.items.append((name, code, t))

    def save(self, fname):
        with open(os.path.join(OUT, fname), "wb") as f:
            f.write(b"MPGOLD1\0" + struct.pack("<I", len(self.items)))
            for name, code, t in self.items:
                nb = name.encode()
                f.write(struct.pack("<I", len(nb)) + nb + struct.pack("<II", code, t.ndim))
                f.write(struct.pack(f"<{t.ndim}I", *t.shape))
                f.write(t.tobytes())
        print(fname, len(self.items), "tensors", os.path.getsize(os.path.join(OUT, fname)), "bytes")


def synth(shape, t, bound):
    n = int(np.prod(shape)) if len(shape) else 1
    j = np.arange(n, dtype=np.uint64)
    h = (j * np.uint64(2654435761) + np.uint64(t * 40503 + 12345)) % np.uint64(2 ** 32)
    v = bound * ((h % np.uint64(2001)).astype(np.float64) - 1000.0) / 1000.0
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


def rnd(*shape, lo=-1.0, hi=1.0):
    return (torch.rand(*shape) * (hi - lo) + lo).float()


def leaf(t):
    return t.clone().requires_grad_()


# ------------------------------------------------------------------ ops

def ops_conv(w):
    cases = [  # N C H W OC KH KW sh sw ph pw bias
        (2, 3, 7, 5, 4, 3, 3, 1, 1, 1, 1, 0),
        (1, 2, 9, 8, 3, 3, 3, 2, 2, 0, 0, 1),
        (3, 4, 5, 5, 3, 1, 1, 1, 1, 0, 0, 0),
        (1, 4, 6, 6, 3, 1, 1, 1, 1, 0, 0, 1),
        (2, 8, 9, 9, 16, 1, 1, 2, 2, 0, 0, 0),
        (2, 3, 19, 17, 8, 7, 7, 2, 2, 3, 3, 0),
        (2, 2, 9, 7, 3, 3, 2, 2, 1, 1, 0, 1),
        (2, 4, 35, 33, 5, 3, 3, 1, 1, 1, 1, 0),
        (6, 8, 3, 3, 8, 3, 3, 2, 2, 1, 1, 1),
    ]
    w.add("count", np.array([len(cases)], np.int32))
    for i, c in enumerate(cases):
        N, C, H, W, OC, KH, KW, sh, sw, ph, pw, bias = c
        x, wt = leaf(rnd(N, C, H, W)), leaf(rnd(OC, C, KH, KW, lo=-0.5, hi=0.5))
        b = leaf(rnd(OC)) if bias else None
        y = F.conv2d(x, wt, b, (sh, sw), (ph, pw))
        R = rnd(*y.shape)
        (y * R).sum().backward()
        p = f"c{i}."
        w.add(p + "cfg", np.array(c, np.int32))
        for k, v in (("x", x), ("w", wt), ("y", y), ("dy", R), ("dx", x.grad), ("dw", wt.grad)):
            w.add(p + k, v)
        if bias:
            w.add(p + "b", b), w.add(p + "db", b.grad)


def ops_norm(w):
    # GroupNorm (with and without the ReLU the engine fuses), BatchNorm train and eval.
    gn_cases = [(2, 64, 5, 3, 32, 1), (1, 6, 4, 4, 3, 0), (3, 64, 1, 1, 8, 1)]  # N C H W G relu
    w.add("gn_count", np.array([len(gn_cases)], np.int32))
    for i, (N, C, H, W, G, relu) in enumerate(gn_cases):
        x, g, b = leaf(rnd(N, C, H, W, lo=-2, hi=2)), leaf(rnd(C, lo=0.5, hi=1.5)), leaf(rnd(C, lo=-0.5, hi=0.5))
        y = F.group_norm(x, G, g, b, 1e-5)
        if relu:
            y = torch.relu(y)
        R = rnd(*y.shape)
        (y * R).sum().backward()
        p = f"gn{i}."
        w.add(p + "cfg", np.array([N, C, H, W, G, relu], np.int32))
        for k, v in (("x", x), ("g", g), ("b", b), ("y", y), ("dy", R), ("dx", x.grad), ("dg", g.grad), ("db", b.grad)):
            w.add(p + k, v)
    bn_cases = [(4, 5, 3, 3, 1, 0), (2, 3, 4, 5, 1, 1), (3, 4, 2, 2, 0, 1)]  # N C H W train relu
    w.add("bn_count", np.array([len(bn_cases)], np.int32))
    for i, (N, C, H, W, train, relu) in enumerate(bn_cases):
        m = nn.BatchNorm2d(C)
        with torch.no_grad():
            m.weight.copy_(rnd(C, lo=0.5, hi=1.5)), m.bias.copy_(rnd(C, lo=-0.5, hi=0.5))
            m.running_mean.copy_(rnd(C, lo=-0.3, hi=0.3)), m.running_var.copy_(rnd(C, lo=0.5, hi=2))
        p = f"bn{i}."
        w.add(p + "cfg", np.array([N, C, H, W, train, relu], np.int32))
        w.add(p + "g", m.weight), w.add(p + "b", m.bias)
        w.add(p + "rm0", m.running_mean.clone()), w.add(p + "rv0", m.running_var.clone())
        m.train(bool(train))
        x = leaf(rnd(N, C, H, W, lo=-2, hi=2))
        y = m(x)
        if relu:
            y = torch.relu(y)
        R = rnd(*y.shape)
        (y * R).sum().backward()
        for k, v in (("x", x), ("y", y), ("dy", R), ("dx", x.grad), ("dg", m.weight.grad), ("db", m.bias.grad),
                     ("rm1", m.running_mean), ("rv1", m.running_var)):
            w.add(p + k, v)
        w.add(p + "nbt", np.array([int(m.num_batches_tracked)], np.int32))


def ops_misc(w):
    # max-pool, global average pool, adaptive max-pool, linear, L2-normalise, ReLU, residual add, dropout(eval)
    def one(p, y, xs, extra=()):
        R = rnd(*y.shape)
        (y * R).sum().backward()
        w.add(p + "y", y), w.add(p + "dy", R)
        for k, x in xs:
            w.add(p + k, x), w.add(p + "d" + k, x.grad)
        for k, v in extra:
            w.add(p + k, v)

    for i, (N, C, H, W, k, s, pd) in enumerate([(2, 3, 9, 9, 3, 2, 1), (1, 2, 6, 7, 2, 2, 0), (2, 2, 8, 8, 3, 1, 1)]):
        x = leaf(rnd(N, C, H, W))
        w.add(f"mp{i}.cfg", np.array([N, C, H, W, k, s, pd], np.int32))
        one(f"mp{i}.", F.max_pool2d(x, k, s, pd), [("x", x)])
    x = leaf(rnd(3, 5, 4, 3))
    one("gap.", x.mean((2, 3)), [("x", x)])
    for i, (N, C, H, W, OH, OW) in enumerate([(2, 3, 7, 7, 2, 2), (1, 4, 7, 5, 3, 2), (2, 2, 5, 5, 4, 4)]):
        x = leaf(rnd(N, C, H, W))
        w.add(f"amp{i}.cfg", np.array([N, C, H, W, OH, OW], np.int32))
        one(f"amp{i}.", F.adaptive_max_pool2d(x, (OH, OW)), [("x", x)])
    x, wt, b = leaf(rnd(4, 7)), leaf(rnd(5, 7)), leaf(rnd(5))
    one("fc.", F.linear(x, wt, b), [("x", x), ("w", wt), ("b", b)])
    x = leaf(rnd(3, 11))
    one("l2.", F.normalize(x, dim=1), [("x", x)])
    x = leaf(rnd(2, 3, 4, 5))
    one("relu.", torch.relu(x), [("x", x)])
    a, b = leaf(rnd(2, 3, 4)), leaf(rnd(2, 3, 4))
    one("add.", torch.relu(a + b), [("a", a), ("b", b)])


def ops_loss(w):
    N, K = 6, 5
    z = leaf(rnd(N, K, lo=-3, hi=3))
    y = torch.tensor([0, 3, 4, 1, 1, 2])
    cw = rnd(K, lo=0.5, hi=3.0)
    for name, kw in (("ce", {}), ("ce_w", dict(weight=cw)), ("ce_ls", dict(label_smoothing=0.1)),
                     ("ce_w_ls", dict(weight=cw, label_smoothing=0.2))):
        z.grad = None
        l = F.cross_entropy(z, y, **kw)
        l.backward()
        w.add(name + ".loss", np.array([l.item()], np.float64)), w.add(name + ".dz", z.grad.clone())
    w.add("ce.z", z), w.add("ce.y", y), w.add("ce.w", cw)

    # KD: T² · KL(softmax(zt/T) ‖ softmax(zs/T)), batchmean; gradients for both sides
    zs, zt = leaf(rnd(N, K, lo=-3, hi=3)), leaf(rnd(N, K, lo=-3, hi=3))
    for T in (1.0, 4.0):
        zs.grad = zt.grad = None
        l = F.kl_div(F.log_softmax(zs / T, 1), F.softmax(zt / T, 1), reduction="batchmean") * T * T
        l.backward()
        w.add(f"kd{int(T)}.loss", np.array([l.item()], np.float64))
        w.add(f"kd{int(T)}.dzs", zs.grad.clone()), w.add(f"kd{int(T)}.dzt", zt.grad.clone())
    w.add("kd.zs", zs), w.add("kd.zt", zt)

    # RBD: KD(T=2) + beta · mse(Fs, adaptive_max_pool(Ft, Fs size)), and the L1 variant
    Fs, Ft = leaf(rnd(N, 8, 2, 3)), rnd(N, 8, 7, 9)
    for name, fn in (("rbd", F.mse_loss), ("rbd_l1", F.l1_loss)):
        zs.grad = None
        Fs.grad = None
        T, beta = 2.0, 0.7
        kd = F.kl_div(F.log_softmax(zs / T, 1), F.softmax(zt.detach() / T, 1), reduction="batchmean") * T * T
        ft = fn(Fs, F.adaptive_max_pool2d(Ft, Fs.shape[2:]))
        l = kd + beta * ft
        l.backward()
        w.add(name + ".loss", np.array([l.item(), kd.item(), (beta * ft).item()], np.float64))
        w.add(name + ".dzs", zs.grad.clone()), w.add(name + ".dFs", Fs.grad.clone())
    w.add("rbd.Fs", Fs), w.add("rbd.Ft", Ft)

    # CRCKD, CCD: bank rows, anchors g (normalised), P positives then K negatives per anchor
    B, D, P, Kn, nd, tau = 4, 16, 3, 6, 30, 0.07
    bank = F.normalize(rnd(nd, D), dim=1)
    g = leaf(F.normalize(rnd(B, D), dim=1))
    idx = torch.randint(0, nd, (B, P + Kn))
    out = torch.exp(torch.einsum("bjd,bd->bj", bank[idx], g) / tau)
    Z = (out.mean() * nd).detach()
    s = out / Z
    c = Kn / nd
    l = -((torch.log(s[:, :P] / (s[:, :P] + c))).mean(1) + torch.log(c / (s[:, P:] + c)).sum(1)).mean()
    l.backward()
    w.add("ccd.bank", bank), w.add("ccd.g", g), w.add("ccd.idx", idx.int()), w.add("ccd.dg", g.grad)
    w.add("ccd.loss", np.array([l.item(), Z.item()], np.float64))
    # second call with a frozen Z on new anchors
    g2 = leaf(F.normalize(rnd(B, D), dim=1))
    s2 = torch.exp(torch.einsum("bjd,bd->bj", bank[idx], g2) / tau) / Z
    l2 = -((torch.log(s2[:, :P] / (s2[:, :P] + c))).mean(1) + torch.log(c / (s2[:, P:] + c)).sum(1)).mean()
    l2.backward()
    w.add("ccd.g2", g2), w.add("ccd.dg2", g2.grad), w.add("ccd.loss2", np.array([l2.item()], np.float64))

    # CRCKD, CRP: centroids from labelled banks (ReLU, mean, normalise), relation KL, both sides
    ncls = 4
    rowlab = torch.arange(nd) % ncls
    bs, bt = rnd(nd, D), rnd(nd, D)
    cs = torch.stack([F.normalize(torch.relu(bs[rowlab == k]).mean(0), dim=0) for k in range(ncls)])
    ct = torch.stack([F.normalize(torch.relu(bt[rowlab == k]).mean(0), dim=0) for k in range(ncls)])
    gs, gt = leaf(F.normalize(rnd(B, D), dim=1)), leaf(F.normalize(rnd(B, D), dim=1))
    rs, rt = gs @ cs.t() / tau, gt @ ct.t() / tau
    l = F.kl_div(F.log_softmax(rs, 1), F.softmax(rt, 1), reduction="batchmean")
    l.backward()
    for k, v in (("bs", bs), ("bt", bt), ("rowlab", rowlab.int()), ("cs", cs), ("ct", ct), ("gs", gs), ("gt", gt),
                 ("dgs", gs.grad), ("dgt", gt.grad)):
        w.add("crp." + k, v)
    w.add("crp.loss", np.array([l.item()], np.float64))


# ------------------------------------------------------------------ models (peer architecture)

def gn(c): return nn.GroupNorm(32, c)


class Block(nn.Module):  # identical to ../shared/peers/torch_resnet_gn.py, norm selectable
    def __init__(s, cin, cout, stride, norm=gn):
        super().__init__()
        s.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False); s.n1 = norm(cout)
        s.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False); s.n2 = norm(cout)
        s.sc = None
        if stride != 1 or cin != cout:
            s.sc = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), norm(cout))

    def forward(s, x):
        y = torch.relu(s.n1(s.c1(x))); y = s.n2(s.c2(y))
        return torch.relu(y + (x if s.sc is None else s.sc(x)))


class ResNet(nn.Module):
    def __init__(s, ncls=2, widths=(32, 64, 128, 256), blocks=(1, 1, 1, 1), norm=gn):
        super().__init__()
        s.stem = nn.Sequential(nn.Conv2d(3, widths[0], 7, 2, 3, bias=False), norm(widths[0]), nn.ReLU(),
                               nn.MaxPool2d(3, 2, 1))
        layers, cin = [], widths[0]
        for i, wd in enumerate(widths):
            for j in range(blocks[i]):
                layers.append(Block(cin, wd, 1 if (i == 0 or j > 0) else 2, norm)); cin = wd
        s.layers = nn.Sequential(*layers)
        s.fc = nn.Linear(cin, ncls)

    def forward(s, x):
        f = s.layers(s.stem(x))
        return s.fc(f.mean((2, 3))), f


def synth_state(m):
    """Deterministic weights both sides can generate (see module docstring)."""
    with torch.no_grad():
        for t, (name, v) in enumerate(m.state_dict().items()):
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                v.copy_(synth(tuple(v.shape), t, 0.5) + 1.0)
            elif v.dim() >= 2:
                fan_in = v[0].numel()
                v.copy_(synth(tuple(v.shape), t, 1.0 / fan_in ** 0.5))
            else:  # norm weights around 1, biases and running means around 0
                v.copy_(synth(tuple(v.shape), t, 0.2) + (1.0 if name.endswith("weight") else 0.0))


def add_grads(w, m, p):
    for name, prm in m.named_parameters():
        g = prm.grad.reshape(-1).float()
        n = g.numel()
        if n <= 4096:
            w.add(p + "g." + name, g)
        else:
            idx = torch.arange(256) * n // 256
            w.add(p + "g." + name, g[idx])
        w.add(p + "a." + name, np.array([prm.grad.abs().double().sum().item()], np.float64))


def close(a, b, atol, rtol):
    return bool(((a.double() - b.double()).abs() <= atol + rtol * b.double().abs()).all())


def model_golden(w, p, make, train, R_seed, loose=1.0, x_seed=0, shape=(2, 3, 64, 64)):
    """Reference = PyTorch in float64 (stored as float32): the exact result, so the C engine is
    measured against the truth rather than against PyTorch's own float32 rounding. The input is
    redrawn until PyTorch float32 itself passes the C test's tolerances against it, which keeps
    every ReLU kink and max-pool tie away from rounding noise. Returns the float64 model."""
    for seed in range(x_seed, x_seed + 50):
        x = (torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1).float()
        res = {}
        for dt in (torch.float32, torch.float64):
            m = make()
            synth_state(m)
            m.to(dt).train(train)
            logits, f = m(x.to(dt))
            g = torch.Generator().manual_seed(R_seed)
            R1 = (torch.rand(logits.shape, generator=g) * 2 - 1)
            R2 = (torch.rand(f.shape, generator=g) * 2 - 1)
            ((logits * R1.to(dt)).sum() + (f * R2.to(dt)).sum()).backward()
            res[dt] = (m, logits.detach(), f.detach(), R1, R2)
        m32, m64 = res[torch.float32][0], res[torch.float64][0]
        ok = close(res[torch.float32][1], res[torch.float64][1], 1e-5 * loose, 1e-4 * loose)
        ok = ok and close(res[torch.float32][2], res[torch.float64][2], 1e-5 * loose, 1e-4 * loose)
        for (n, a), (_, b) in zip(m32.named_parameters(), m64.named_parameters()):
            ok = ok and close(a.grad, b.grad, 1e-4 * loose, 1e-3 * loose)
        if ok:
            break
        print(p, "input seed", seed, "rejected: PyTorch float32 strays from float64 beyond tolerance")
    else:
        raise SystemExit(p + ": no well-conditioned input found")
    m, logits, f, R1, R2 = res[torch.float64]
    w.add(p + "x", x), w.add(p + "logits", logits.float()), w.add(p + "F", f.float())
    w.add(p + "dlogits", R1), w.add(p + "dF", R2)
    add_grads(w, m, p)
    return m, x


def models():
    w = Writer()
    # one residual block (stride 2, shortcut) composed from ops in the C test
    blk = Block(16, 32, 2)
    synth_state(blk)
    x = leaf(rnd(2, 16, 9, 9))
    y = blk(x)
    R = rnd(*y.shape)
    (y * R).sum().backward()
    w.add("blk.x", x), w.add("blk.y", y), w.add("blk.dy", R), w.add("blk.dx", x.grad)
    for name, prm in blk.named_parameters():
        w.add("blk.p." + name, prm.detach()), w.add("blk.g." + name, prm.grad)
    w.save("model_block.bin")

    w = Writer()
    m, x = model_golden(w, "gn.", lambda: ResNet(ncls=3), True, 1)
    w.add("gn.nparams", np.array([sum(q.numel() for q in m.parameters())], np.int32))
    with torch.no_grad():  # the student size on the same net: forward only
        x32 = x[:, :, ::2, ::2].contiguous()
        l32, f32 = m(x32.double())
        m32 = ResNet(ncls=3)
        synth_state(m32)
        l32f, f32f = m32(x32)
        assert close(l32f, l32, 1e-5, 1e-4) and close(f32f, f32, 1e-5, 1e-4), "32 px input ill-conditioned"
    w.add("gn32.x", x32), w.add("gn32.logits", l32.float()), w.add("gn32.F", f32.float())
    # ResNet-18 layout with BatchNorm, train mode (running stats updated), then eval forward.
    # Batch statistics of an 18-layer net are ill-conditioned enough that float32 PyTorch strays
    # from float64 by ~5e-5 here: this variant is held to 10x the tolerances, in the C test too.
    m18, x18 = model_golden(w, "bn.", lambda: ResNet(ncls=4, widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2),
                                                    norm=nn.BatchNorm2d), True, 2, loose=10, shape=(4, 3, 64, 64))
    w.add("bn.rm.layers.3.n2", m18.layers[3].n2.running_mean.float())
    w.add("bn.rv.layers.3.n2", m18.layers[3].n2.running_var.float())
    m18.eval()
    with torch.no_grad():
        w.add("bn.eval_logits", m18(x18.double())[0].float())
    w.save("model_resnet.bin")

    # 10 Adam steps (lr 1e-3, wd 1e-4, the RBD settings) of cross-entropy on one batch, in
    # float64. Adam's eps is 1e-3 here, not 1e-8: with a tiny eps the first step is lr·sign(g),
    # so a gradient within float32 rounding of zero (there are always some among 1.2 M) gets a
    # full ±lr step whose sign is noise, and the trajectories part by ~1% within three steps.
    w = Writer()
    m = ResNet(ncls=3)
    synth_state(m)
    m.double()
    x = rnd(4, 3, 32, 32)
    y = torch.tensor([0, 2, 1, 2])
    opt = torch.optim.Adam(m.parameters(), lr=1e-3, weight_decay=1e-4, eps=1e-3)
    losses = []
    for _ in range(10):
        opt.zero_grad()
        l = F.cross_entropy(m(x.double())[0], y)
        l.backward()
        opt.step()
        losses.append(l.item())
    w.add("adam.x", x), w.add("adam.y", y.int()), w.add("adam.loss", np.array(losses, np.float64))
    w.add("adam.fc.weight", m.fc.weight.float()), w.add("adam.fc.bias", m.fc.bias.float())
    w.save("model_adam.bin")


def main():
    os.makedirs(OUT, exist_ok=True)
    print("torch", torch.__version__)
    w = Writer(); ops_conv(w); w.save("ops_conv.bin")
    w = Writer(); ops_norm(w); w.save("ops_norm.bin")
    w = Writer(); ops_misc(w); w.save("ops_misc.bin")
    w = Writer(); ops_loss(w); w.save("ops_loss.bin")
    models()


if __name__ == "__main__":
    main()
