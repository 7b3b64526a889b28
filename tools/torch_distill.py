"""tools/torch_distill.py — bench/distill's recipe in PyTorch (Debian python3-torch, offline), on
the patches tools/export_patches.py wrote: teacher @10x, baseline @1.25x, RBD (cached teacher
draws), CRCKD (EMA teacher, heads, banks, CCD + CRP) and RBD+CRCKD, with the same
hyperparameters, augmentation and model selection as `magpie train`. Writes OUT/results.json.
Usage: /usr/bin/python3 tools/torch_distill.py EXPORTDIR OUT [--threads 2] [--seed 1] [--views 4] [--only ROWS] [--no-extra-flips] [--avg-epochs 2]
       [--teacher OUT/teacher.pt (reuse a saved teacher instead of training one)]
       [--epochs ROW=N,...] [--patience ROW=N,...]"""
import json, math, os, sys, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HI, LO = "mag10", "mag1.25"


# ---- the RBD paper's ResNet-GN (written from METHODS.md) ----
class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.n1 = nn.GroupNorm(32, cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.n2 = nn.GroupNorm(32, cout)
        self.sc = None
        if stride != 1 or cin != cout:
            self.sc = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.GroupNorm(32, cout))

    def forward(self, x):
        y = self.n2(self.c2(F.relu(self.n1(self.c1(x)))))
        return F.relu(y + (x if self.sc is None else self.sc(x)))


class Net(nn.Module):
    def __init__(self, k, widths=(32, 64, 128, 256)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 7, 2, 3, bias=False), nn.GroupNorm(32, widths[0]), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        layers, cin = [], widths[0]
        for i, w in enumerate(widths):
            layers.append(Block(cin, w, 1 if i == 0 else 2))
            cin = w
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, k)

    def forward(self, x):
        f = self.layers(self.stem(x))
        pooled = f.mean((2, 3))
        return self.fc(pooled), f, pooled


# ---- augmentation: flips, rot90, colour jitter (b, c, s .5, hue .2, random order), same on both views ----
def draw_aug(rng):
    return dict(h=rng.integers(2), v=rng.integers(2), r=rng.integers(4), b=rng.uniform(0.5, 1.5), c=rng.uniform(0.5, 1.5),
                s=rng.uniform(0.5, 1.5), hue=rng.uniform(-0.2, 0.2), order=rng.permutation(4))


def gray(x):
    return 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]


def rgb2hsv(x):
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    mx, _ = x.max(1)
    mn, _ = x.min(1)
    d = mx - mn
    s = torch.where(mx > 0, d / mx.clamp(min=1e-12), torch.zeros_like(mx))
    dd = d.clamp(min=1e-12)
    h = torch.where(mx == r, (g - b) / dd, torch.where(mx == g, 2 + (b - r) / dd, 4 + (r - g) / dd)) / 6
    h = torch.where(d > 0, h - torch.floor(h), torch.zeros_like(h))
    return h, s, mx


def hsv2rgb(h, s, v):
    h6 = h * 6
    i = torch.floor(h6).long() % 6
    f = h6 - torch.floor(h6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    r = torch.stack([v, q, p, p, t, v])
    g = torch.stack([t, v, v, q, p, p])
    b = torch.stack([p, p, t, v, v, q])
    idx = i.unsqueeze(0)
    return torch.stack([r.gather(0, idx)[0], g.gather(0, idx)[0], b.gather(0, idx)[0]], 1)


def augment_batch(x, augs, extra=None):
    """x: B×3×H×W in [0,1]; augs: one draw per sample (colour jitter in each sample's own op order,
    then flips and rot90, then the optional extra flip/rot90 of the mean-teacher view)."""
    x = x.clone()
    B = x.shape[0]
    col = lambda key: torch.tensor([a[key] for a in augs], dtype=torch.float32).view(B, 1, 1, 1)
    bf, cf, sf, hf = col("b"), col("c"), col("s"), col("hue").view(B, 1, 1)
    order = np.stack([a["order"] for a in augs])
    for pos in range(4):
        for op in range(4):
            m = torch.from_numpy(order[:, pos] == op)
            if not m.any():
                continue
            y = x[m]
            if op == 0:
                y = (y * bf[m]).clamp(0, 1)
            elif op == 1:
                mean = gray(y).mean((1, 2)).view(-1, 1, 1, 1)
                y = (cf[m] * y + (1 - cf[m]) * mean).clamp(0, 1)
            elif op == 2:
                g = gray(y).unsqueeze(1)
                y = (sf[m] * y + (1 - sf[m]) * g).clamp(0, 1)
            else:
                h, s_, v = rgb2hsv(y)
                h = h + hf[m]
                y = hsv2rgb(h - torch.floor(h), s_, v)
            x[m] = y
    out = []
    for i, a in enumerate(augs):
        xi = x[i]
        if a["h"]:
            xi = xi.flip(2)
        if a["v"]:
            xi = xi.flip(1)
        xi = torch.rot90(xi, int(a["r"]), (1, 2))
        if extra is not None:
            e_h, e_r = extra[i]
            if e_h:
                xi = xi.flip(2)
            xi = torch.rot90(xi, e_r, (1, 2))
        out.append(xi)
    return torch.stack(out)


def stats(imgs):
    idx = np.linspace(0, len(imgs), min(len(imgs), 512), endpoint=False).astype(int)
    x = imgs[idx].reshape(-1, 3).astype(np.float64) / 255
    return x.mean(0), np.maximum(x.std(0), 1e-4)


def to_tensor(u8, mean, std):
    return ((torch.from_numpy(u8).float() / 255 - torch.tensor(mean).float().view(1, 1, 3)) /
            torch.tensor(std).float().view(1, 1, 3)).permute(0, 3, 1, 2).contiguous()


def draw_turns(idx, seed, ep):
    """A fresh flip + rot90 per (epoch, patch) for the student's view of a reused cached draw."""
    out = []
    for i in idx:
        e = np.random.default_rng([seed, 0xd17, ep, int(i)])
        out.append((int(e.integers(2)), int(e.integers(4))))
    return out


def turn(t, turns):
    """Apply per-sample flip + rot90 to B×C×H×W tensors (images or the cached teacher maps)."""
    out = []
    for ti, (h, r) in zip(t, turns):
        if h:
            ti = ti.flip(2)
        out.append(torch.rot90(ti, r, (1, 2)))
    return torch.stack(out)


def batch_views(imgs_list, idx, epoch_key, seed, norms, extra_rng=None, turns=None):
    """Augmented, normalised batch for each image array in imgs_list (same draw for all views);
    `turns` adds a per-sample flip + rot90 to the first view only."""
    augs = [draw_aug(np.random.default_rng([seed, 0xa06, epoch_key, int(i)])) for i in idx]
    res = []
    for v, arr in enumerate(imgs_list):
        x = torch.from_numpy(arr[idx]).float().permute(0, 3, 1, 2) / 255
        m, s = norms[v]
        res.append((augment_batch(x, augs, turns if v == 0 else None) - torch.tensor(m).float().view(1, 3, 1, 1)) /
                   torch.tensor(s).float().view(1, 3, 1, 1))
    if extra_rng is not None:
        ex = []
        for i in idx:
            e = np.random.default_rng([seed, 0x7e1, extra_rng, int(i)])
            ex.append((int(e.integers(2)), int(e.integers(4))))
        x = torch.from_numpy(imgs_list[0][idx]).float().permute(0, 3, 1, 2) / 255
        m, s = norms[0]
        res.append((augment_batch(x, augs, ex) - torch.tensor(m).float().view(1, 3, 1, 1)) / torch.tensor(s).float().view(1, 3, 1, 1))
    return res


# ---- metrics ----
def balanced_accuracy(y, pred, k):
    rec = [np.mean(pred[y == c] == c) for c in range(k) if np.any(y == c)]
    return float(np.mean(rec))


def macro_f1(y, pred, k):
    f = []
    for c in range(k):
        tp = np.sum((pred == c) & (y == c))
        p = tp / max(np.sum(pred == c), 1)
        r = tp / max(np.sum(y == c), 1)
        f.append(0 if p + r == 0 else 2 * p * r / (p + r))
    return float(np.mean(f))


def auc_ovr(y, prob, k):
    out = []
    for c in range(k):
        s, pos = prob[:, c], y == c
        order = np.argsort(s, kind="mergesort")
        ranks = np.empty(len(s))
        ss = s[order]
        i = 0
        while i < len(ss):  # average ranks over ties
            j = i
            while j < len(ss) and ss[j] == ss[i]:
                j += 1
            ranks[order[i:j]] = (i + j + 1) / 2
            i = j
        npos, nneg = pos.sum(), (~pos).sum()
        out.append((ranks[pos].sum() - npos * (npos + 1) / 2) / (npos * nneg))
    return float(np.mean(out))


@torch.no_grad()
def predict(model, u8, mean, std, bs=128):
    model.eval()
    ps = []
    for i in range(0, len(u8), bs):
        z = model(to_tensor(u8[i:i + bs], mean, std))[0]
        ps.append(F.softmax(z, 1).numpy())
    model.train()
    return np.concatenate(ps)


def evaluate(model, d, key, mean, std, k):
    p = predict(model, d[key], mean, std)
    y = d["y"]
    keep = y >= 0
    return p[keep], y[keep]


# ---- training ----
def train(name, args, data, k, mag, method, teacher=None, tnorm=None, epochs=30, patience=8, lr=1e-3, wd=1e-4,
          warmup=0):
    seed = args["seed"]
    if args.get("quick"):
        epochs = 1
    torch.manual_seed(seed)
    key = HI if mag == 10 else LO
    tr, va, un = data["train"], data["val"], data.get("unlabeled")
    use_unl = "rbd" in method and un is not None
    lab = tr["y"] >= 0
    imgs = tr[key][lab]
    y = tr["y"][lab]
    pair = tr[HI][lab] if "rbd" in method else None
    if use_unl:
        imgs = np.concatenate([imgs, un[key]])
        y = np.concatenate([y, un["y"]])
        pair = np.concatenate([pair, un[HI]])
    n = len(imgs)
    mean, std = stats(imgs)
    model = Net(k)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    nb = math.ceil(n / args["batch"])
    sched = None
    crckd = "crckd" in method
    if crckd:
        ema = Net(k)
        ema.load_state_dict(model.state_dict())
        for p in ema.parameters():
            p.requires_grad_(False)
        d = 128
        heads = nn.ModuleList([nn.Sequential(nn.Linear(256, d), nn.Linear(d, d)) for _ in range(2)])
        hopt = torch.optim.Adam(heads.parameters(), lr=lr, weight_decay=wd)
        if method == "crckd":
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-4, total_steps=epochs * nb)
            hsched = torch.optim.lr_scheduler.OneCycleLR(hopt, max_lr=3e-4, total_steps=epochs * nb)
        g = torch.Generator().manual_seed(seed)
        stdv = 1 / math.sqrt(d / 3)
        banks = [(torch.rand(n, d, generator=g) * 2 - 1) * stdv for _ in range(2)]
        Z = [None, None]
        byclass = [np.where(y == c)[0] for c in range(k)]
        cnt = np.array([len(b) for b in byclass])
        nlab = int(cnt.sum())
        cw = torch.tensor([nlab / c if c else 0 for c in cnt], dtype=torch.float32)
        K = min(4096, int(min(nlab - c for c in cnt if c)))
        P = 20
    # RBD rows validate and keep a moving average of the weights over ~2 epochs (magpie's --avg-epochs)
    avg, avg_decay = None, 0.0
    if teacher is not None and args["avg_epochs"] > 0:
        avg = Net(k)
        avg.load_state_dict(model.state_dict())
        avg_decay = 1 - 1 / (args["avg_epochs"] * nb)
    # RBD: cached teacher outputs for `views` augmentation draws per pair (magpie's --teacher-views)
    views = args["views"]
    if teacher is not None:
        teacher.eval()
        with torch.no_grad():
            zs = model(torch.zeros(1, 3, imgs.shape[1], imgs.shape[2]))[1]
        hs, ws = zs.shape[2], zs.shape[3]
        cz = torch.zeros(views, n, k)
        cf = torch.zeros(views, n, 256, hs, ws)
        with torch.no_grad():
            for a in range(views):
                for i in range(0, n, args["batch"]):
                    idx = np.arange(i, min(n, i + args["batch"]))
                    xp, = batch_views([pair], idx, a, seed, [tnorm])
                    z, f, _ = teacher(xp)
                    cz[a, idx] = z
                    cf[a, idx] = F.adaptive_max_pool2d(f, (hs, ws))
    # magpie's --warmup N: the lr rises linearly over the first N steps (lr x (t + 1) / N at step t)
    wsched = None
    if warmup > 0 and sched is None:
        wsched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: min(1.0, (t + 1) / warmup))
    best, best_state, bad, best_ep = -1, None, 0, -1
    t0 = time.time()
    step = 0
    for ep in range(epochs):
        perm = np.random.default_rng([seed, 0x5f1, ep]).permutation(n)
        for bi in range(nb):
            idx = perm[bi * args["batch"]:(bi + 1) * args["batch"]]
            akey = ep % views if teacher is not None else ep
            # with cached teacher outputs the student's view also gets a fresh flip + rot90 each
            # epoch (magpie's default; --no-extra-flips there, --no-extra-flips here), the map turned to match
            tn = draw_turns(idx, seed, ep) if teacher is not None and args["extra_flips"] else None
            vs = batch_views([imgs], idx, akey, seed, [(mean, std)], extra_rng=ep if crckd else None, turns=tn)
            x = vs[0]
            yb = torch.from_numpy(y[idx])
            z, f, pooled = model(x)
            loss = 0
            if teacher is not None:
                zt, ft = cz[ep % views, idx], cf[ep % views, idx]
                if tn is not None:
                    ft = turn(ft, tn)
                loss = loss + F.kl_div(F.log_softmax(z, 1), F.softmax(zt, 1), reduction="batchmean") + F.mse_loss(f, ft)
            if crckd:
                labm = yb >= 0
                if labm.any():
                    loss = loss + F.cross_entropy(z[labm], yb[labm], weight=cw)
                with torch.no_grad():
                    zt2, _, pt = ema(vs[1])
                w = math.exp(-5 * (1 - ep / 30) ** 2) if ep < 30 else 1.0
                loss = loss + w * F.kl_div(F.log_softmax(z, 1), F.softmax(zt2, 1), reduction="batchmean")
                gs = F.normalize(heads[0](pooled), dim=1)
                gt = F.normalize(heads[1](pt), dim=1)
                li = torch.nonzero(labm).flatten()
                if len(li):
                    rows = torch.from_numpy(idx[li.numpy()])
                    yl = yb[li].numpy()
                    r = np.random.default_rng([seed, 0x5a3, step])
                    samp = np.zeros((len(li), P + K), np.int64)
                    for b, c in enumerate(yl):
                        samp[b, 0] = rows[b]
                        samp[b, 1:P] = r.choice(byclass[c], P - 1)
                        other = np.concatenate([byclass[o] for o in range(k) if o != c])
                        samp[b, P:] = r.choice(other, K)
                    samp = torch.from_numpy(samp)
                    ccd = 0
                    for side, (ga, bank) in enumerate(((gs[li], banks[1]), (gt[li], banks[0]))):
                        sc = torch.exp(torch.einsum("bjd,bd->bj", bank[samp], ga) / 0.07)
                        if Z[side] is None:
                            Z[side] = float(sc.mean().detach()) * n
                        s = sc / Z[side]
                        kp = K / n
                        lp = torch.log(s[:, :P] / (s[:, :P] + kp)).mean(1)
                        ln = torch.log(kp / (s[:, P:] + kp)).sum(1)
                        ccd = ccd - (lp + ln).mean()
                    loss = loss + 0.1 * ccd
                    labels_all = torch.from_numpy(y)
                    cents = []
                    for bank in banks:
                        cm = torch.zeros(k, d)
                        for c in range(k):
                            m = labels_all == c
                            if m.any():
                                cm[c] = F.normalize(F.relu(bank[m]).mean(0), dim=0)
                        cents.append(cm)
                    rs = gs[li] @ cents[0].t() / 0.07
                    rt = gt[li].detach() @ cents[1].t() / 0.07
                    loss = loss + F.kl_div(F.log_softmax(rs, 1), F.softmax(rt, 1), reduction="batchmean")
                    with torch.no_grad():
                        for bank, gg in ((banks[0], gs[li]), (banks[1], gt[li])):
                            bank[rows] = F.normalize(0.5 * bank[rows] + 0.5 * gg, dim=1)
            elif teacher is None:
                loss = loss + F.cross_entropy(z, yb)
            if not torch.isfinite(loss):
                sys.exit(f"{name}: loss {loss.item()}")
            opt.zero_grad()
            if crckd:
                hopt.zero_grad()
            loss.backward()
            opt.step()
            if crckd:
                hopt.step()
                a = min(1 - 1 / (step + 1), 0.99)
                with torch.no_grad():
                    for pe, ps in zip(ema.parameters(), model.parameters()):
                        pe.mul_(a).add_(ps, alpha=1 - a)
            if avg is not None:  # magpie's --avg-epochs: a = min(1 - 1/(step+1), decay)
                a = min(1 - 1 / (step + 1), avg_decay)
                with torch.no_grad():
                    for pa_, ps in zip(avg.parameters(), model.parameters()):
                        pa_.mul_(a).add_(ps, alpha=1 - a)
            if sched is not None:
                sched.step()
                hsched.step()
            if wsched is not None:
                wsched.step()
            step += 1
        vm = avg if avg is not None else model
        p, yv = evaluate(vm, va, key, mean, std, k)
        v = balanced_accuracy(yv, p.argmax(1), k)
        print(f"{name} epoch {ep + 1}: loss {float(loss):.4f} val bacc {v:.4f}", flush=True)
        if v > best + 1e-9:
            best, bad, best_ep = v, 0, ep
            best_state = {kk: t.clone() for kk, t in vm.state_dict().items()}
        # as magpie's tr_patience_counts: warm-up epochs do not count, nor those of a run whose best is
        # still its first epoch's and at chance (it has not started, it is not on a plateau)
        elif (sched is None or step > int(0.3 * epochs * nb)) and step > warmup and (best_ep > 0 or best > 1 / k + 1e-6):
            bad += 1
            if bad >= patience:
                break
    secs = time.time() - t0
    model.load_state_dict(best_state)
    model.eval()
    return model, (mean, std), secs


def main():
    exp, out = sys.argv[1], sys.argv[2]
    args = {"threads": 2, "seed": 1, "batch": 32, "views": 4}
    for kk in ("threads", "seed", "views"):
        if f"--{kk}" in sys.argv:
            args[kk] = int(sys.argv[sys.argv.index(f"--{kk}") + 1])
    args["extra_flips"] = "--no-extra-flips" not in sys.argv
    args["avg_epochs"] = float(sys.argv[sys.argv.index("--avg-epochs") + 1]) if "--avg-epochs" in sys.argv else 2.0
    args["quick"] = "--quick" in sys.argv  # one epoch per model: a smoke test of the script
    # schedule per row, "--epochs teacher=25,rbd=100" / "--patience rbd=20" (same as bench/distill/run.sh)
    # defaults: magpie's (tr_auto_schedule): label-only rows get epochs for ~1000 steps within
    # 30..200 and patience a quarter (at least 8); the RBD rows 100 and 25
    ep, pa = dict(rbd=100, rbd_crckd=100), dict(rbd=25, rbd_crckd=25)
    exp_train = np.load(os.path.join(exp, "train.npz"))
    nlab = int((exp_train["y"] >= 0).sum())
    nb = -(-nlab // args["batch"])
    auto = min(200, max(30, -(-1000 // nb)))
    for row in ("teacher", "baseline", "crckd"):
        ep[row], pa[row] = auto, max(8, auto // 4)
    wu = {}  # "--warmup teacher=30": magpie's --warmup per row (steps)
    for flag, d in (("--epochs", ep), ("--patience", pa), ("--warmup", wu)):
        if flag in sys.argv:
            for kv in sys.argv[sys.argv.index(flag) + 1].split(","):
                kk, vv = kv.split("=")
                d[kk] = int(vv)
    torch.set_num_threads(args["threads"])
    os.makedirs(out, exist_ok=True)
    data = {s: dict(np.load(os.path.join(exp, f"{s}.npz"))) for s in ("train", "val", "test", "unlabeled")
            if os.path.exists(os.path.join(exp, f"{s}.npz"))}
    k = len(open(os.path.join(exp, "classes.txt")).read().split())
    res = {}

    def report(name, model, norm, mag, secs):
        key = HI if mag == 10 else LO
        t = time.time()
        p, y = evaluate(model, data["test"], key, norm[0], norm[1], k)
        inf = time.time() - t
        res[name] = {"balanced_accuracy": balanced_accuracy(y, p.argmax(1), k), "macro_f1": macro_f1(y, p.argmax(1), k),
                     "auc": auc_ovr(y, p, k), "train_seconds": secs, "inference_seconds": inf}
        print(name, res[name], flush=True)
        json.dump(res, open(os.path.join(out, "results.json"), "w"), indent=1)

    # --only baseline,crckd runs the label-only rows (no 10x teacher needed: minutes instead of an hour)
    only = set(sys.argv[sys.argv.index("--only") + 1].split(",")) if "--only" in sys.argv else None
    want = lambda n: only is None or n in only
    if want("baseline"):
        m, nrm, s = train("baseline", args, data, k, 1.25, "supervised", epochs=ep["baseline"], patience=pa["baseline"])
        report("baseline", m, nrm, 1.25, s)
    if want("crckd"):
        m, nrm, s = train("crckd", args, data, k, 1.25, "crckd", epochs=ep["crckd"], patience=pa["crckd"], lr=1e-4, wd=5e-4)
        report("crckd", m, nrm, 1.25, s)
    if not (want("teacher") or want("rbd") or want("rbd_crckd")):
        return
    if "--teacher" in sys.argv:  # reuse a saved teacher (student seed sweeps against one teacher)
        saved = torch.load(sys.argv[sys.argv.index("--teacher") + 1])
        teacher = Net(k)
        teacher.load_state_dict(saved["state"])
        teacher.eval()
        tnorm = saved["norm"]
    else:
        teacher, tnorm, s = train("teacher", args, data, k, 10, "supervised", epochs=ep["teacher"], patience=pa["teacher"],
                                  warmup=wu.get("teacher", 0))
        torch.save({"state": teacher.state_dict(), "norm": tnorm}, os.path.join(out, "teacher.pt"))
        report("teacher", teacher, tnorm, 10, s)
    if want("rbd"):
        m, nrm, s = train("rbd", args, data, k, 1.25, "rbd", teacher=teacher, tnorm=tnorm, epochs=ep["rbd"], patience=pa["rbd"])
        report("rbd", m, nrm, 1.25, s)
    if want("rbd_crckd"):
        m, nrm, s = train("rbd_crckd", args, data, k, 1.25, "rbd+crckd", teacher=teacher, tnorm=tnorm, epochs=ep["rbd_crckd"], patience=pa["rbd_crckd"])
        report("rbd_crckd", m, nrm, 1.25, s)


if __name__ == "__main__":
    main()
