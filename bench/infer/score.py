#!/usr/bin/python3
"""bench/infer/score.py — scores `magpie infer` heatmaps against synth's class masks.
Usage: score.py WORKDIR [SET]   (SET = test by default; WORKDIR/out/SET/RUN/<slide>/ from
bench/infer/quality.sh, the slides and masks in WORKDIR/SET/)

Each heatmap cell (probability.tif level 0, float32, one band per class) is compared with the
class that covers most of the cell's tissue in synth's mask (NAME_mask.png, 0 = glass, k = class
k); cells with no tissue in the mask, or not evaluated by every run of the same stride, are left
out, so the runs of one stride are scored on the same cells. Per class, pooled over the slides:
ROC AUC (one class against the rest, ties counted half) and the Dice coefficient of
{p >= t} against the class's cells at the threshold t that maximises it. Prints a Markdown table;
writes WORKDIR/quality_SET.json."""
import glob, json, os, sys

import numpy as np
import tifffile
from PIL import Image

W = sys.argv[1]
SET = sys.argv[2] if len(sys.argv) > 2 else "test"


def auc(score, pos):
    """Mann-Whitney U / (n+ n-), average ranks for ties."""
    n1 = int(pos.sum()); n0 = len(pos) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[i:j + 1] = (i + j) / 2 + 1
        i = j + 1
    r = np.empty(len(s)); r[order] = ranks
    return float((r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def best_dice(score, pos):
    """max over t of 2|{p>=t} & pos| / (|{p>=t}| + |pos|), t over the scores themselves."""
    order = np.argsort(-score, kind="mergesort")
    s, p = score[order], pos[order]
    tp = np.cumsum(p); k = np.arange(1, len(s) + 1)
    last = np.r_[s[1:] != s[:-1], True]  # a threshold takes every tie at once
    d = 2 * tp[last] / (k[last] + p.sum())
    b = int(np.argmax(d))
    return float(d[b]), float(s[last][b])


def truth(slide_dir, pred):
    """Per cell: majority tissue class (1..K of synth) and tissue share, from the class mask."""
    name = os.path.basename(slide_dir.rstrip("/"))
    side = json.load(open(os.path.join(W, SET, name + ".json")))
    mask = np.asarray(Image.open(os.path.join(W, SET, side["mask"]["file"])))
    ds = side["mask"]["downsample"]
    g = pred["grid"]
    nx, ny, c0, ox, oy = g["width"], g["height"], g["cell_level0_px"], g["origin_x"], g["origin_y"]
    ncls = len(side["classes"])
    lab = np.zeros((ny, nx), np.int64); share = np.zeros((ny, nx))
    for j in range(ny):
        y0, y1 = int(round((oy + j * c0) / ds)), int(round((oy + (j + 1) * c0) / ds))
        for i in range(nx):
            x0, x1 = int(round((ox + i * c0) / ds)), int(round((ox + (i + 1) * c0) / ds))
            m = mask[max(0, y0):max(0, y1), max(0, x0):max(0, x1)]
            if m.size == 0:
                continue
            h = np.bincount(m.ravel(), minlength=ncls + 1)
            share[j, i] = 1 - h[0] / m.size
            if h[1:].sum():
                lab[j, i] = 1 + int(np.argmax(h[1:]))
    names = [c["name"] for c in sorted(side["classes"], key=lambda c: c["value"])]
    return lab, share, names


def load_run(run_dir):
    out = {}
    for pj in sorted(glob.glob(os.path.join(run_dir, "*", "prediction.json"))):
        d = os.path.dirname(pj)
        pred = json.load(open(pj))
        prob = tifffile.imread(os.path.join(d, "probability.tif"), key=0).astype(np.float64)
        if prob.ndim == 2:
            prob = prob[:, :, None]
        if prob.shape[0] == len(pred["classes"]) and prob.shape[-1] != len(pred["classes"]):
            prob = np.moveaxis(prob, 0, -1)
        out[os.path.basename(d)] = (pred, prob)
    return out


runs = {os.path.basename(p): load_run(p) for p in sorted(glob.glob(os.path.join(W, "out", SET, "*")))}
by_stride = {}
for r, v in runs.items():
    if not v:
        continue
    pred0 = next(iter(v.values()))[0]
    by_stride.setdefault(round(pred0["grid"]["cell_level0_px"], 3), []).append(r)

results = {}
rows = []
for stride, names_ in sorted(by_stride.items(), reverse=True):
    slides = sorted(set.intersection(*[set(runs[r]) for r in names_]))
    gt = {s: truth(os.path.join(W, "out", SET, names_[0], s), runs[names_[0]][s][0]) for s in slides}
    order = {"teacher": 0, "student": 1, "cascade": 2}
    names_.sort(key=lambda r: (order.get(r.split("-")[0], 3), r))
    for r in names_:
        S, Y = [], []
        seconds = cpu = 0.0
        for s in slides:
            pred, prob = runs[r][s]
            lab, share, gnames = gt[s]
            ok = lab > 0
            for r2 in names_:  # cells every run of this stride evaluated
                ok &= runs[r2][s][1].sum(-1) > 0
            cls = pred["classes"]
            # model band of synth class k (by name; by position for a model without the names)
            idx = [cls.index(n) for n in gnames] if set(gnames) <= set(cls) else list(range(len(gnames)))
            S.append(prob[ok][:, idx]); Y.append(lab[ok] - 1)
            seconds += pred["timing"]["seconds"]
            cpu += pred["timing"].get("cpu_seconds", float("nan"))
        S = np.concatenate(S); Y = np.concatenate(Y)
        per = {}
        for k, n in enumerate(gnames):
            pos = Y == k
            d, t = best_dice(S[:, k], pos)
            per[n] = {"auc": auc(S[:, k], pos), "dice": d, "threshold": t, "cells": int(pos.sum())}
        results[r] = {"cells": int(len(Y)), "slides": len(slides), "seconds": seconds, "cpu_seconds": cpu,
                      "classes": per,
                      "macro_auc": float(np.nanmean([p["auc"] for p in per.values()])),
                      "macro_dice": float(np.mean([p["dice"] for p in per.values()])),
                      "cell_um": stride * json.load(open(os.path.join(W, SET, slides[0] + ".json")))["mpp"]}
        rows.append(r)

json.dump(results, open(os.path.join(W, f"quality_{SET}.json"), "w"), indent=1)
cls = list(next(iter(results.values()))["classes"])
print(f"| run ({SET} slides) | cell µm | cells | " + " | ".join(f"{c} AUC / Dice" for c in cls) +
      " | macro AUC | macro Dice | wall s | CPU s |")
print("|---|---|---|" + "---|" * len(cls) + "---|---|---|---|")
for r in rows:
    x = results[r]
    print(f"| {r} | {x['cell_um']:.0f} | {x['cells']} | " +
          " | ".join(f"{x['classes'][c]['auc']:.3f} / {x['classes'][c]['dice']:.3f}" for c in cls) +
          f" | {x['macro_auc']:.3f} | {x['macro_dice']:.3f} | {x['seconds']:.1f} | {x['cpu_seconds']:.1f} |")
