#!/usr/bin/python3
"""bench/infer/report.py — the Markdown section from bench/infer/run.sh's raw lines.
Usage: report.py RAW THREADS TEACHER_FLOPS STUDENT_FLOPS LOAD0 LOAD1 MIN_TISSUE [BIG_SLIDE]"""
import json, statistics as st, subprocess, sys

raw, th, ft, fs, load0, load1, mt = sys.argv[1:8]
big = sys.argv[8] if len(sys.argv) > 8 else ""
ft, fs = float(ft), float(fs)
med = st.median
gem_w, gem_c, net_c, mag, peer = [], [], [], {}, {}
for line in open(raw):
    f = line.split()
    if not f:
        continue
    if f[0] == "gemm":
        j = json.loads(line[5:])
        gem_w.append(med(j["gflops"])); gem_c.append(med(j["gflops_cpu"]))
    elif f[0] == "net":
        j = json.loads(line[4:])
        net_c.append(j["flops"] * j["batch"] / 1e9 / med(j["cpu"][1:] or j["cpu"]))
    elif f[0] == "magpie":
        mag.setdefault(f[1], []).append([float(x) for x in f[2:]])
    elif f[0] == "peer":
        peer.setdefault(f[1], []).append([float(x) for x in f[2:]])


def col(rows, i):
    return med(r[i] for r in rows)


cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
field = lambda k: next((l.split(":", 1)[1].strip() for l in cpu.splitlines() if l.strip().startswith(k)), "?")
flags = field("Flags").split()
vec = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE"
nrep = len(gem_w)
print(f"Machine: {field('Model name')}, {field('CPU(s)')} CPUs, {vec}; {th} threads per side; "
      f"load average (1/5/15 min) {' '.join(load0.split()[:3])} at the start, {' '.join(load1.split()[:3])} at the end; "
      f"medians of {nrep} alternating repeats. sgemm (OpenBLAS, n = 1536, same run): "
      f"{med(gem_w):.1f} GFLOP/s wall, {med(gem_c):.1f} GFLOP per CPU-second.\n")
print("| model | tool | patches | wall s | CPU s | peak RSS | wall ratio | CPU ratio | per-patch wall ratio |")
print("|---|---|---|---|---|---|---|---|---|")
res = {}
for tag, label, fl in (("teacher", "teacher 10x / 256 px", ft), ("student", "student 1.25x / 32 px", fs)):
    if tag not in mag or tag not in peer:
        continue
    m, p = mag[tag], peer[tag]
    mw, mc, mr, mn = col(m, 0), col(m, 1) + col(m, 2), col(m, 3) / 1024, col(m, 4)
    pw, pc, pr, pn = col(p, 0), col(p, 1) + col(p, 2), col(p, 3) / 1024, col(p, 4)
    res[tag] = (m, p, mw, mc, mn, pw, pc, pn, fl)
    print(f"| {label} | magpie infer | {mn:.0f} | {mw:.2f} | {mc:.2f} | {mr:.0f} MiB | **{pw / mw:.2f}x** | "
          f"**{pc / mc:.2f}x** | {(pw / pn) / (mw / mn):.2f}x |")
    print(f"| {label} | torch_infer.py (peer) | {pn:.0f} | {pw:.2f} | {pc:.2f} | {pr:.0f} MiB | | | |")
print("\nRatios are peer / magpie (above 1: magpie faster); wall and CPU time are whole processes "
      "(start-up, imports, model load, mask, reads, network, outputs). The peer's own timer (after its imports): " +
      ", ".join(f"{t} {col(peer[t], 5):.2f} s" for t in ("teacher", "student") if t in peer) + ".\n")
print("magpie's split (prediction.json `timing`, wall seconds, medians):\n")
print("| model | total | open | mask | patch loop | of which read (reader thread) | network | write outputs |")
print("|---|---|---|---|---|---|---|---|")
for tag in ("teacher", "student"):
    if tag in mag:
        m = mag[tag]
        print(f"| {tag} | " + " | ".join(f"{col(m, i):.3f}" for i in range(5, 12)) + " |")
if "teacher" in res and "student" in res:
    t, s = res["teacher"], res["student"]
    print(f"\nStudent vs teacher end to end on the same slide: magpie {t[2] / s[2]:.1f}x wall, {t[3] / s[3]:.1f}x CPU; "
          f"peer {t[5] / s[5]:.1f}x wall, {t[6] / s[6]:.1f}x CPU; FLOP ratio {ft / fs:.0f}x.")
if "teacher" in res:
    m, _, mw, mc, mn, *_ = res["teacher"]
    net = col(m, 10)
    lim = mn * ft / (med(gem_w) * 1e9)
    lim_cpu = mn * ft / (med(gem_c) * 1e9)
    print(f"\nCompute limit at 10x: {mn:.0f} patches x {ft / 1e9:.3f} GFLOP / {med(gem_w):.1f} GFLOP/s = {lim:.2f} s wall; "
          f"magpie's network took {net:.2f} s (**{100 * lim / net:.0f}%** of the limit's speed) and the whole run "
          f"{mw:.2f} s ({100 * lim / mw:.0f}%). On CPU time: limit {lim_cpu:.2f} CPU-s, whole run {mc:.2f} CPU-s "
          f"({100 * lim_cpu / mc:.0f}%).")
if net_c:
    print(f"\nThe network alone (bench_nn --infer, batch 8 at 256 px, {th} threads, same run): {med(net_c):.1f} GFLOP per "
          f"CPU-second, **{100 * med(net_c) / med(gem_c):.0f}%** of sgemm's {med(gem_c):.1f}.")
for tag in ("big-student", "big-teacher"):
    if tag in mag:
        m = mag[tag]
        print(f"\n{big}, {tag[4:]}: {col(m, 4):.0f} patches, {col(m, 0):.1f} s wall, peak RSS {col(m, 3) / 1024:.0f} MiB.")
