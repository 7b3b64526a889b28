"""bench/distill/report.py — the benchmark table (markdown) from magpie's eval JSON files and,
when present, the PyTorch side-by-side results (WORKDIR/torch/results.json)."""
import json, os, sys

W = sys.argv[1]
rows = [("teacher", "teacher @10x (CE, labels)"), ("baseline", "baseline student @1.25x (CE, labels)"),
        ("rbd", "RBD student @1.25x (labeled + unlabeled)"), ("crckd", "CRCKD student @1.25x"),
        ("rbd_crckd", "RBD+CRCKD student @1.25x")]
times = {}
if os.path.exists(f"{W}/times.txt"):
    for line in open(f"{W}/times.txt"):
        k, v = line.split()
        times[k] = float(v)
torch = {}
if os.path.exists(f"{W}/torch/results.json"):
    torch = json.load(open(f"{W}/torch/results.json"))

def pct(x): return f"{100 * x:.1f}"

print("| model | test balanced accuracy (95% CI) | macro-F1 | macro AUC | GFLOPs/patch | train s | infer patches/s | PyTorch bal. acc. | diff |")
print("|---|---|---|---|---|---|---|---|---|")
teacher_flops = None
res = {}
for key, label in rows:
    p = f"{W}/{key}.eval.json"
    if not os.path.exists(p):
        continue
    j = json.load(open(p))
    res[key] = j
    b = j["balanced_accuracy"]
    fl = j["flops_per_patch"]
    if key == "teacher":
        teacher_flops = fl
    ips = j["patches"] / max(j["inference_seconds"], 1e-9)
    t = torch.get(key, {}).get("balanced_accuracy")
    tcol = pct(t) if t is not None else "—"
    dcol = f"{100 * (b['value'] - t):+.1f}" if t is not None else "—"
    print(f"| {label} | {pct(b['value'])} ({pct(b['ci'][0])}–{pct(b['ci'][1])}) | {pct(j['macro_f1']['value'])} | "
          f"{j['macro_auc']['value']:.3f} | {fl / 1e9:.4f} | {times.get(key, float('nan')):.0f} | {ips:.0f} | {tcol} | {dcol} |")
if "rbd" in res and "baseline" in res and "teacher" in res:
    r, b, t = (res[k]["balanced_accuracy"]["value"] for k in ("rbd", "baseline", "teacher"))
    print()
    print(f"RBD − baseline: {100 * (r - b):+.1f} points (target ≥ +3); teacher − RBD: {100 * (t - r):.1f} points "
          f"(target ≤ 3); FLOPs teacher/student: {teacher_flops / res['rbd']['flops_per_patch']:.1f}x (target 64x)")
if os.path.exists(f"{W}/total.txt"):
    print(open(f"{W}/total.txt").read().strip())
