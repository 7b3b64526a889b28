"""Writes tests/nn/golden/optim_golden.safetensors: PyTorch's SGD/Adam/AdamW and LR schedules
over a few steps on small tensors with fixed gradients. Run offline: /usr/bin/python3 tools/golden_optim.py
Per case <c>: tensors <c>.w0/<c>.b0 (start), <c>.g.<k>.{w,b} (gradient at step k),
<c>.p.<k>.{w,b} (parameters after step k), <c>.lr / <c>.mom (F64, value used at step k);
metadata <c>.kind, .lr, .wd, .momentum, .nesterov, .sched and schedule fields."""
import os, sys
import torch
sys.path.insert(0, os.path.dirname(__file__))
import st_writer

STEPS = 8
CASES = [
    ("sgd", "sgd", dict(lr=0.1), None),
    ("sgd_momentum", "sgd", dict(lr=0.1, momentum=0.9, weight_decay=1e-2), None),
    ("sgd_nesterov", "sgd", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3), None),
    ("adam", "adam", dict(lr=1e-2, weight_decay=1e-4), None),
    ("adamw", "adamw", dict(lr=1e-2, weight_decay=1e-2), None),
    ("sgd_step", "sgd", dict(lr=0.1, momentum=0.9), ("step", dict(step_size=3, gamma=0.5))),
    ("adam_cosine", "adam", dict(lr=1e-2), ("cosine", dict(T_max=STEPS, eta_min=1e-4))),
    ("adam_onecycle", "adam", dict(lr=1e-2, weight_decay=5e-4), ("onecycle", dict(max_lr=1e-2, total_steps=STEPS))),
    ("sgd_onecycle", "sgd", dict(lr=0.1, momentum=0.9), ("onecycle", dict(max_lr=0.1, total_steps=STEPS))),
    ("adamw_onecycle", "adamw", dict(lr=1e-2), ("onecycle", dict(max_lr=3e-3, total_steps=STEPS))),
]


def main():
    out, meta = {}, {"cases": ",".join(c[0] for c in CASES), "steps": str(STEPS), "torch": torch.__version__}
    for ci, (name, kind, kw, sched) in enumerate(CASES):
        g = torch.Generator().manual_seed(100 + ci)
        w = torch.randn(3, 4, generator=g).requires_grad_()
        b = torch.randn(4, generator=g).requires_grad_()
        out[f"{name}.w0"], out[f"{name}.b0"] = w.detach().clone(), b.detach().clone()
        opt = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[kind]([w, b], **kw)
        full = opt.defaults
        meta[f"{name}.kind"] = kind
        meta[f"{name}.lr"] = repr(full["lr"])
        meta[f"{name}.wd"] = repr(full["weight_decay"])
        if kind == "sgd":
            meta[f"{name}.momentum"] = repr(full["momentum"])
            meta[f"{name}.nesterov"] = "1" if full["nesterov"] else "0"
        else:
            meta[f"{name}.beta1"], meta[f"{name}.beta2"] = repr(full["betas"][0]), repr(full["betas"][1])
            meta[f"{name}.eps"] = repr(full["eps"])
        sch = None
        meta[f"{name}.sched"] = sched[0] if sched else "constant"
        if sched:
            for k, v in sched[1].items():
                meta[f"{name}.{k}"] = repr(v)
            if sched[0] == "step":
                sch = torch.optim.lr_scheduler.StepLR(opt, **sched[1])
            elif sched[0] == "cosine":
                sch = torch.optim.lr_scheduler.CosineAnnealingLR(opt, **sched[1])
            else:
                sch = torch.optim.lr_scheduler.OneCycleLR(opt, **sched[1])
        lrs, moms = [], []
        for k in range(STEPS):
            gw = torch.randn(3, 4, generator=g) * 0.5
            gb = torch.randn(4, generator=g) * 0.5
            out[f"{name}.g.{k}.w"], out[f"{name}.g.{k}.b"] = gw, gb
            w.grad, b.grad = gw.clone(), gb.clone()
            grp = opt.param_groups[0]
            lrs.append(grp["lr"])
            moms.append(grp["betas"][0] if "betas" in grp else grp["momentum"])
            opt.step()
            if sch:
                sch.step()
            out[f"{name}.p.{k}.w"], out[f"{name}.p.{k}.b"] = w.detach().clone(), b.detach().clone()
        out[f"{name}.lr"] = torch.tensor(lrs, dtype=torch.float64)
        out[f"{name}.mom"] = torch.tensor(moms, dtype=torch.float64)
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "tests", "nn", "golden", "optim_golden.safetensors")
    st_writer.save(path, out, meta)
    print("wrote", os.path.normpath(path), os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
