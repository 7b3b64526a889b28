"""bench/distill/report.py — results.md (markdown), results.json and plot.json (for distill_plot)
from run.sh's WORKDIR: every row as mean ± sd over the cells (data seed × training seed) of each
regime, the per-cell figures with their slide-level 95% CIs, the targets, and the magnification
sweep when it ran. Usage: python3 bench/distill/report.py WORKDIR > WORKDIR/results.md"""
import glob, json, math, os, re, statistics, sys

W = sys.argv[1]
cfg = json.load(open(f"{W}/config.json"))
TM, SM = cfg["teacher_mag"], cfg["student_mag"]
ROWS = [("teacher", f"teacher @{TM:g}x"), ("baseline", f"baseline @{SM:g}x"), ("rbd", f"RBD @{SM:g}x"),
        ("all_labels", f"all labels @{SM:g}x"), ("crckd", f"CRCKD @{SM:g}x"), ("rbd_crckd", f"RBD+CRCKD @{SM:g}x")]
DESC = {"teacher": "CE on the labelled train patches", "baseline": "CE on the same labels",
        "rbd": "KD + feature loss from the teacher on labelled + unlabeled pairs, no label term",
        "all_labels": "CE on every train + unlabeled label (the ceiling of the student's images)",
        "crckd": "CRCKD on the labels", "rbd_crckd": "RBD + CRCKD"}
# two-sided 95% Student t quantiles by degrees of freedom
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
       11: 2.201, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


def t95(df):
    k = max(d for d in T95 if d <= df)
    return T95[k]


def cells(regime):
    return sorted(glob.glob(f"{W}/{regime}/d*/t*"), key=lambda p: (int(p.split("/d")[-1].split("/")[0]), p))


def seeds_of(c):
    m = re.search(r"/d(\d+)/t(\d+)$", c)
    return int(m.group(1)), int(m.group(2))


def load(c, name):
    p = f"{c}/{name}.eval.json"
    if not os.path.exists(p):
        return None
    j = json.load(open(p))
    t = f"{c}/{name}.train.txt"
    j["_train"] = open(t).read() if os.path.exists(t) else ""
    times = {}
    if os.path.exists(f"{c}/times.txt"):
        for line in open(f"{c}/times.txt"):
            k, v = line.split()
            times[k] = float(v)
    j["_seconds"] = times.get(name, float("nan"))
    return j


def stats(v):
    n = len(v)
    if not n:
        return None
    m = statistics.fmean(v)
    sd = statistics.stdev(v) if n > 1 else float("nan")
    half = t95(n - 1) * sd / math.sqrt(n) if n > 1 else float("nan")
    return {"n": n, "mean": m, "sd": sd, "ci95_of_mean": [m - half, m + half], "values": v}


def fmt(s):
    if not s:
        return "—"
    if s["n"] == 1:
        return f"{s['mean']:.1f} (n = 1, no sd)"
    return f"{s['mean']:.1f} ± {s['sd']:.1f} (n = {s['n']})"


def epochs(txt):
    """(epochs run, best epoch) from magpie train's last line 'OUT: N epochs, ... (epoch B)'."""
    m = re.search(r": (\d+) epochs, .*\(epoch (\d+)\)", txt)
    return (int(m.group(1)), int(m.group(2))) if m else (None, None)


regimes = cfg["regimes"].split(",")
res = {"config": cfg, "regimes": {}}
for R in regimes:
    rr = {"cells": [], "rows": {}}
    for c in cells(R):
        ds, ts = seeds_of(c)
        for key, _ in ROWS:
            j = load(c, key)
            if j:
                ep, best = epochs(j["_train"])
                rr["cells"].append({"data_seed": ds, "train_seed": ts, "row": key,
                                    "balanced_accuracy": 100 * j["balanced_accuracy"]["value"],
                                    "ci": [100 * x if x is not None else None for x in j["balanced_accuracy"]["ci"]],
                                    "ci_unit": j.get("ci_unit", "patch"), "ci_units": j.get("ci_units"),
                                    "slide_vote": 100 * j["slide_vote_balanced_accuracy"],
                                    "gflops": j["flops_per_patch"] / 1e9, "px": j["input_size"], "mag": j["mag"],
                                    "train_s": j["_seconds"], "epochs_run": ep, "best_epoch": best})
    for key, _ in ROWS:
        v = [x["balanced_accuracy"] for x in rr["cells"] if x["row"] == key]
        if v:
            s = stats(v)
            one = next(x for x in rr["cells"] if x["row"] == key)
            s["gflops"], s["px"] = one["gflops"], one["px"]
            rr["rows"][key] = s
    res["regimes"][R] = rr

machine = open(f"{W}/machine.txt").read().strip() if os.path.exists(f"{W}/machine.txt") else ""
out = []
P = out.append
if cfg["quick"]:
    P("**QUICK RUN (`--quick`): one data seed × one training seed, mild regime only. Not the benchmark's "
      "seed grid: no sd, no interval over seeds; read the per-cell slide-level CI instead.**\n")
P("# bench/distill results\n")
for line in machine.splitlines():
    P(f"- {line}")
src = f"dataset `{cfg['dataset']}`" if cfg["dataset"] else f"magpie synth, {cfg['slides']} slides per cell"
P(f"- data: {src}; teacher @{TM:g}x, students @{SM:g}x; {cfg['threads']} threads")
P(f"- data seeds (fresh, drawn at run time unless given): {cfg['data_seeds']}; training seeds: {cfg['train_seeds']}")
P(f"- seeds used while the recipe was built: data seed {cfg['dev_data_seeds']} (never drawn here), "
  f"training seeds {cfg['dev_train_seeds']} (on that data only)")
P("- each row: test balanced accuracy (%) as mean ± sd over the cells (data seed × training seed); "
  "per cell, `magpie eval`'s 95% CI from 10,000 class-balanced bootstrap resamples of whole slides\n")

main_rows = any(res["regimes"][R]["cells"] for R in regimes)
if not main_rows:
    P("No finished rows on slides at 1.0 µm/px in this WORKDIR (run.sh --at-40x-only runs only the 40x rows).\n")
else:
    P("## Table\n")
    hdr = "| row | what it is | input px | GFLOPs/patch | " + " | ".join(regimes) + " |"
    P(hdr)
    P("|" + "---|" * (4 + len(regimes)))
    for key, label in ROWS:
        have = [res["regimes"][R]["rows"].get(key) for R in regimes]
        if not any(have):
            continue
        one = next(h for h in have if h)
        P(f"| {label} | {DESC[key]} | {one['px']} | {one['gflops']:.4f} | " + " | ".join(fmt(h) for h in have) + " |")
    P("")

for R in regimes:
    rows = res["regimes"][R]["rows"]
    if not all(k in rows for k in ("teacher", "baseline", "rbd")):
        continue
    t, b, r = rows["teacher"], rows["baseline"], rows["rbd"]
    a = rows.get("all_labels")
    P(f"**{R}**: RBD − baseline {r['mean'] - b['mean']:+.1f} (target ≥ +3); teacher − RBD {t['mean'] - r['mean']:.1f} "
      f"(target ≤ 3)" + (f"; all labels − RBD {a['mean'] - r['mean']:+.1f} (target ≤ 1)" if a else "")
      + f"; FLOPs teacher/student {t['gflops'] / r['gflops']:.1f}x.")
    if r["n"] > 1 and b["n"] > 1:
        lo_r, hi_b = r["ci95_of_mean"][0], b["ci95_of_mean"][1]
        P(f"  95% t-intervals of the seed means: RBD [{r['ci95_of_mean'][0]:.1f}, {r['ci95_of_mean'][1]:.1f}], baseline "
          f"[{b['ci95_of_mean'][0]:.1f}, {b['ci95_of_mean'][1]:.1f}]: {'do not overlap' if lo_r > hi_b else 'overlap'}.")
    else:
        P("  One cell: no interval over seeds, so the target on non-overlapping intervals cannot be judged here.")
    P("")

if main_rows:
    P("## Per cell\n")
    P("| regime | data seed | training seed | row | balanced accuracy (95% CI, by slide) | slide vote | epochs run | best epoch | train s |")
    P("|---|---|---|---|---|---|---|---|---|")
    for R in regimes:
        for x in res["regimes"][R]["cells"]:
            ci = x["ci"]
            cis = f"{ci[0]:.1f}–{ci[1]:.1f}, {x['ci_units']} {x['ci_unit']}s" if ci[0] is not None else "—"
            P(f"| {R} | {x['data_seed']} | {x['train_seed']} | {x['row']} | {x['balanced_accuracy']:.1f} ({cis}) | "
              f"{x['slide_vote']:.1f} | {x['epochs_run']} | {x['best_epoch']} | {x['train_s']:.0f} |")
    P("")

# the sweep: students at several magnifications from the same teacher (first regime's cells)
sweep = None
R0 = regimes[0]
sw_cells = cells(R0)
if cfg.get("sweep") and sw_cells:
    mags = [5, 2.5, SM, 0.625]
    series = {"baseline": [], "rbd": []}
    gfl, px = [], []
    for m in mags:
        for kind in ("baseline", "rbd"):
            name = kind if m == SM else f"{kind}@{m:g}"
            v = [100 * j["balanced_accuracy"]["value"] for j in (load(c, name) for c in sw_cells) if j]
            series[kind].append(stats(v))
        j = next((x for c in sw_cells for x in (load(c, f"{k}@{m:g}" if m != SM else k) for k in ("rbd", "baseline")) if x),
                 None)
        gfl.append(j["flops_per_patch"] / 1e9 if j else float("nan"))
        px.append(j["input_size"] if j else None)
    tv = stats([100 * j["balanced_accuracy"]["value"] for j in (load(c, "teacher") for c in sw_cells) if j])
    tj = load(sw_cells[0], "teacher")
    P(f"## Magnification sweep ({R0}; students from the same {TM:g}x teacher, 256 px at {TM:g}x)\n")
    P("| student mag | input px (same 256 µm square) | GFLOPs/patch | FLOPs vs teacher | baseline | RBD |")
    P("|---|---|---|---|---|---|")
    for i, m in enumerate(mags):
        ratio = f"1/{tj['flops_per_patch'] / 1e9 / gfl[i]:.0f}" if gfl[i] == gfl[i] else "—"
        P(f"| {m:g}x | {px[i] or '—'} | {gfl[i]:.4f} | {ratio} | {fmt(series['baseline'][i])} | "
          f"{fmt(series['rbd'][i])} |")
    P(f"| {TM:g}x (the teacher) | {tj['input_size']} | {tj['flops_per_patch'] / 1e9:.4f} | 1 | teacher: {fmt(tv)} | |")
    pair = sorted(glob.glob(f"{W}/{R0}-20x/d*/t*"))
    if pair:
        pr = {k: stats([100 * j["balanced_accuracy"]["value"] for j in (load(c, k) for c in pair) if j])
              for k in ("teacher", "baseline", "rbd")}
        j20, j5 = load(pair[0], "teacher"), load(pair[0], "rbd")
        P(f"\n20x → 5x pair (slides at 0.5 µm/px; 256 px at 20x = 128 µm, 64 px at 5x): teacher @20x {fmt(pr['teacher'])}, "
          f"baseline @5x {fmt(pr['baseline'])}, RBD @5x {fmt(pr['rbd'])}; GFLOPs "
          f"{j20['flops_per_patch'] / 1e9:.4f} → {j5['flops_per_patch'] / 1e9:.4f}" if j20 and j5 else "")
    P("")
    sweep = {"title": f"Students from one {TM:g}x teacher ({R0}): accuracy and cost against magnification",
             "mags": [TM] + mags, "gflops": [tj["flops_per_patch"] / 1e9] + gfl,
             "note": "input px: " + ", ".join(f"{m:g}x {p}" for m, p in zip([TM] + mags, [tj["input_size"]] + px)) +
                     "; error bars: sd over seeds",
             "series": [{"name": "teacher", "mean": [tv["mean"] if tv else None] + [None] * 4, "sd": [None] * 5},
                        {"name": "baseline (CE, labels)", "mean": [None] + [s["mean"] if s else None for s in series["baseline"]],
                         "sd": [None] + [s["sd"] if s and s["n"] > 1 else None for s in series["baseline"]]},
                        {"name": "RBD", "mean": [None] + [s["mean"] if s else None for s in series["rbd"]],
                         "sd": [None] + [s["sd"] if s and s["n"] > 1 else None for s in series["rbd"]]}]}
    res["sweep"] = sweep

# the same slides at 40x level 0 (run.sh --at-40x): the pyramid and resampling path of real 40x slides
at40 = sorted(glob.glob(f"{W}/{R0}-40x/d*/t*"))
if at40:
    P(f"## Slides at 40x ({R0}): the same physical slides at 0.25 µm/px, 10x and 1.25x read through the pyramid\n")
    P("| row | slides at 1.0 µm/px (10x level 0) | slides at 0.25 µm/px (40x level 0) |")
    P("|---|---|---|")
    res["at_40x"] = {}
    for k, label in ROWS[:3]:
        lo = stats([100 * j["balanced_accuracy"]["value"] for j in (load(c, k) for c in sw_cells) if j])
        hi = stats([100 * j["balanced_accuracy"]["value"] for j in (load(c, k) for c in at40) if j])
        P(f"| {label} | {fmt(lo)} | {fmt(hi)} |")
        res["at_40x"][k] = {"level0_10x": lo, "level0_40x": hi}
    P("")
    # paired: each 40x cell against the cell of the same data and training seeds at 1 µm/px
    same = {seeds_of(c): c for c in sw_cells}
    pairs = []
    for c in at40:
        for k, label in ROWS[:3]:
            a, b = load(same[seeds_of(c)], k) if seeds_of(c) in same else None, load(c, k)
            if b:
                pairs.append((seeds_of(c), k, label, 100 * a["balanced_accuracy"]["value"] if a else None,
                              100 * b["balanced_accuracy"]["value"]))
    if pairs:
        P("Per cell, paired with the cell of the same data and training seeds at 1 µm/px where there is one:\n")
        P("| data seed | training seed | row | 1.0 µm/px | 0.25 µm/px | 40x − 1 µm/px |")
        P("|---|---|---|---|---|---|")
        for (ds, ts), k, label, a, b in pairs:
            P(f"| {ds} | {ts} | {label} | {'—' if a is None else f'{a:.1f}'} | {b:.1f} | "
              f"{'—' if a is None else f'{b - a:+.1f}'} |")
        P("")
        res["at_40x"]["paired"] = {}
        for k, label in ROWS[:3]:
            d = [b - a for _, kk, _, a, b in pairs if kk == k and a is not None]
            if d:
                st = stats(d)
                res["at_40x"]["paired"][k] = st
                P(f"- {label}: 40x − 1 µm/px {fmt(st)}" + (f", 95% t-interval [{st['ci95_of_mean'][0]:+.1f}, "
                                                            f"{st['ci95_of_mean'][1]:+.1f}]" if st["n"] > 1 else ""))
        P("")

# run.sh --torch: tools/torch_distill.py on each cell's own patches; each row compared on the cells
# that have both, as the means over those cells (the target: within 2 points on every row's mean)
def torch_side(cs):
    out = {}
    for k, _ in ROWS[:3]:
        mine, theirs, seeds = [], [], []
        for c in cs:
            j, tj = load(c, k), f"{c}/torch/results.json"
            if not j or not os.path.exists(tj):
                continue
            tv = json.load(open(tj)).get(k, {}).get("balanced_accuracy")
            if tv is None:
                continue
            mine.append(100 * j["balanced_accuracy"]["value"])
            theirs.append(100 * tv)
            seeds.append("d%d/t%d" % seeds_of(c))
        if mine:
            out[k] = {"cells": seeds, "magpie": stats(mine), "torch": stats(theirs),
                      "difference": statistics.fmean(mine) - statistics.fmean(theirs)}
    return out


groups = [(R, cells(R)) for R in regimes] + ([(f"{R0}, slides at 40x", at40)] if at40 else [])
side = {g: torch_side(cs) for g, cs in groups}
if any(side.values()):
    P("## PyTorch side by side (tools/torch_distill.py on the same patches, run.sh --torch)\n")
    P("Each row on the cells that ran both; magpie − PyTorch on the means (target: within 2 points).\n")
    P("| cells | row | n | magpie | PyTorch | magpie − PyTorch | within 2 |")
    P("|---|---|---|---|---|---|---|")
    for g, _ in groups:
        for k, label in ROWS[:3]:
            x = side[g].get(k)
            if x:
                P(f"| {g} | {label} | {x['magpie']['n']} | {fmt(x['magpie'])} | {fmt(x['torch'])} | "
                  f"{round(x['difference'], 1) + 0.0:+.1f} | {'yes' if abs(x['difference']) <= 2 else '**no**'} |")  # + 0.0: no "-0.0"
    P("")
    P("Per cell (magpie / PyTorch): " + "; ".join(
        f"{g} {label} " + ", ".join(f"{s} {a:.1f}/{b:.1f}" for s, a, b in
                                    zip(x["cells"], x["magpie"]["values"], x["torch"]["values"]))
        for g, _ in groups for k, label in ROWS[:3] for x in [side[g].get(k)] if x) + "\n")
    res["torch"] = side


def clean(o):  # JSON has no NaN: missing numbers are null
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: clean(v) for k, v in o.items()}
    if isinstance(o, list):
        return [clean(v) for v in o]
    return o


json.dump(clean(res), open(f"{W}/results.json", "w"), indent=1, default=str)
shown = [(k, l) for k, l in ROWS if any(k in res["regimes"][R]["rows"] for R in regimes)]
plot = {"title": ("QUICK RUN, one seed: " if cfg["quick"] else "") + "test balanced accuracy by row and regime",
        "groups": regimes, "rows": [l for _, l in shown],
        "mean": [[res["regimes"][R]["rows"].get(k, {}).get("mean") for k, _ in shown] for R in regimes],
        "sd": [[(lambda s: s["sd"] if s and s["n"] > 1 else None)(res["regimes"][R]["rows"].get(k)) for k, _ in shown]
               for R in regimes],
        "note": f"mean ± sd over data seeds {cfg['data_seeds']} × training seeds {cfg['train_seeds']}"}
if at40 and shown:  # the 40x cells as one more group (teacher, baseline, RBD)
    a40 = res["at_40x"]
    plot["groups"].append(f"{R0}, slides at 40x")
    st40 = [(a40.get(k) or {}).get("level0_40x") for k, _ in shown]
    plot["mean"].append([st["mean"] if st else None for st in st40])
    plot["sd"].append([st["sd"] if st and st["n"] > 1 else None for st in st40])
if sweep:
    plot["sweep"] = sweep
json.dump(clean(plot), open(f"{W}/plot.json", "w"), indent=1)
print("\n".join(out))
