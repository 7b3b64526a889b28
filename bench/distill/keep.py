"""bench/distill/keep.py — copy the finished cells of a run.sh WORKDIR into a ledger folder kept in
the repository, so that a seed grid that takes longer than one machine lives can be finished on
another and reported as one table.

    /usr/bin/python3 bench/distill/keep.py WORKDIR LEDGER

A cell (regime/dSEED/tSEED) is copied only when every row it ran has its evaluation (the
*.eval.json that run.sh writes last): per row the evaluation, the training output and its
per-epoch log, the cell's times.txt and, after run.sh --torch, the PyTorch rows (torch/results.json
and the script's output); no checkpoint, no dataset. LEDGER/config.json is
WORKDIR's with the data seeds, training seeds and regimes of every cell the ledger holds; a
ledger refuses cells from a WORKDIR of another recipe or other magnifications. The ledger is a
WORKDIR to report.py: `python3 bench/distill/report.py LEDGER` prints the table of all its
cells. A cell the ledger already holds gets the evaluated rows it lacks, even while the cell is
still training (run.sh --sweep-only over kept seeds adds the magnification sweep row by row). To continue a grid elsewhere, run run.sh with the ledger's seeds in a new WORKDIR, then
keep.py again (cells already in the ledger are left as they are)."""
import glob, json, os, shutil, sys

ROWS = ("teacher", "baseline", "rbd", "all_labels", "crckd", "rbd_crckd")
SAME = ("teacher_mag", "student_mag", "recipe", "slides", "dataset", "dev_data_seeds")


def die(msg):
    print(f"keep.py: {msg}", file=sys.stderr)
    sys.exit(1)


def merge_list(a, b, key=int):
    out = []
    for s in (a + "," + b).split(","):
        if s and s not in out:
            out.append(s)
    return ",".join(sorted(out, key=key))


def keep_torch(c, dst):
    """run.sh --torch's finished PyTorch rows of cell c: results.json (last: it marks them kept) and
    the script's output."""
    os.makedirs(f"{dst}/torch", exist_ok=True)
    for name in ("train.txt", "results.json"):
        if os.path.exists(f"{c}/torch/{name}"):
            shutil.copyfile(f"{c}/torch/{name}", f"{dst}/torch/.{name}.tmp")
            os.rename(f"{dst}/torch/.{name}.tmp", f"{dst}/torch/{name}")


def main():
    if len(sys.argv) != 3:
        die("usage: keep.py WORKDIR LEDGER")
    w, led = sys.argv[1], sys.argv[2]
    try:
        cfg = json.load(open(f"{w}/config.json"))
    except (OSError, ValueError) as e:
        die(f"{w}/config.json: {e}")
    cfg.setdefault("recipe", 1)
    old = None
    if os.path.exists(f"{led}/config.json"):
        old = json.load(open(f"{led}/config.json"))
        old.setdefault("recipe", 1)
        for k in SAME:
            if old.get(k) != cfg.get(k):
                die(f"{led} holds cells with {k} = {old.get(k)!r}, {w} has {cfg.get(k)!r}")
        if old.get("quick") != cfg.get("quick"):
            die(f"{led} and {w} differ in --quick")
    kept = []
    first = cfg.get("regimes", "").split(",")[0]
    for c in sorted(glob.glob(f"{w}/*/d*/t*")):
        rel = os.path.relpath(c, w)
        regime = rel.split("/")[0]
        swept = [os.path.basename(p)[:-len(".train.txt")] for p in sorted(glob.glob(f"{c}/*@*.train.txt"))]
        rows = [r for r in ROWS if os.path.exists(f"{c}/{r}.train.txt")] + swept
        if "-" in regime:
            last = "rbd"  # REGIME-20x / REGIME-40x cells end with RBD
        elif cfg.get("sweep") and regime == first:
            last = "rbd@0.625"  # --sweep cells end with the smallest student
        else:
            last = "all_labels"
        dst = f"{led}/{rel}"
        if os.path.exists(dst):
            # a cell the ledger holds: add the evaluated rows it lacks (a --sweep-only run over kept
            # seeds); each row is whole once evaluated, so a cell still training gives what it has
            rows = [r for r in rows if os.path.exists(f"{c}/{r}.eval.json")]
            add = [r for r in rows if not os.path.exists(f"{dst}/{r}.eval.json")]
            torch_new = os.path.exists(f"{c}/torch/.done") and not os.path.exists(f"{dst}/torch/results.json")
            if not add and not torch_new:
                continue
            for r in rows:
                if r not in add and r in ROWS:
                    a = json.load(open(f"{c}/{r}.eval.json"))["balanced_accuracy"]["value"]
                    b = json.load(open(f"{dst}/{r}.eval.json"))["balanced_accuracy"]["value"]
                    if abs(a - b) > 1e-9:
                        print(f"keep.py: note: {rel} {r} was retrained to {100 * a:.2f}, the ledger's is {100 * b:.2f}; "
                              f"the added rows came from the retrained one", file=sys.stderr)
            times = {}
            if os.path.exists(f"{c}/times.txt"):
                times = dict(line.split() for line in open(f"{c}/times.txt") if line.strip())
            had = {line.split()[0] for line in open(f"{dst}/times.txt") if line.strip()} \
                if os.path.exists(f"{dst}/times.txt") else set()
            for r in add:
                for ext in ("train.txt", "log.jsonl", "eval.json"):  # the evaluation last: it marks the row done
                    if os.path.exists(f"{c}/{r}.{ext}"):
                        shutil.copyfile(f"{c}/{r}.{ext}", f"{dst}/.{r}.{ext}.tmp")
                        os.rename(f"{dst}/.{r}.{ext}.tmp", f"{dst}/{r}.{ext}")
                if r in times and r not in had:
                    with open(f"{dst}/times.txt", "a") as f:
                        f.write(f"{r} {times[r]}\n")
            if torch_new:
                keep_torch(c, dst)
                if "torch" in times and "torch" not in had:
                    with open(f"{dst}/times.txt", "a") as f:
                        f.write(f"torch {times['torch']}\n")
            kept.append((regime, f"{rel} (+{', '.join(add + (['PyTorch rows'] if torch_new else []))})"))
            continue
        if not rows or any(not os.path.exists(f"{c}/{r}.eval.json") for r in rows) or \
                not os.path.exists(f"{c}/{last}.eval.json"):
            continue  # a new cell: still training, or stopped before its last row
        tmp = os.path.join(os.path.dirname(dst), "." + os.path.basename(dst) + ".tmp")  # not a t* for report.py
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        for r in rows:
            for ext in ("eval.json", "train.txt", "log.jsonl"):
                if os.path.exists(f"{c}/{r}.{ext}"):
                    shutil.copyfile(f"{c}/{r}.{ext}", f"{tmp}/{r}.{ext}")
        if os.path.exists(f"{c}/times.txt"):
            shutil.copyfile(f"{c}/times.txt", f"{tmp}/times.txt")
        if os.path.exists(f"{c}/torch/.done"):
            keep_torch(c, tmp)
        os.rename(tmp, dst)
        kept.append((regime, rel))
    held = sorted(glob.glob(f"{led}/*/d*/t*"))
    if not held:
        die(f"no finished cell in {w} (a cell is kept once its all-labels row is evaluated)")
    new = dict(old or cfg)
    new["regimes"] = merge_list("", ",".join(sorted({os.path.relpath(h, led).split("/")[0].split("-")[0] for h in held})),
                                key=str)
    new.pop("sweep_only", None)  # a ledger's rows are what its cells hold
    for k in ("sweep", "at_40x"):  # the optional rows the ledger holds from any of its WORKDIRs
        new[k] = max(int(cfg.get(k, 0)), int((old or {}).get(k, 0)))
    new["data_seeds"] = merge_list("", ",".join(h.split("/d")[-1].split("/")[0] for h in held))
    new["train_seeds"] = merge_list("", ",".join(h.rsplit("/t", 1)[-1] for h in held))
    new["threads"] = cfg["threads"]
    tmp = f"{led}/config.json.tmp"
    with open(tmp, "w") as f:
        json.dump(new, f, indent=1)
        f.write("\n")
    os.rename(tmp, f"{led}/config.json")
    if kept and os.path.exists(f"{w}/machine.txt"):
        with open(f"{led}/machines.txt", "a") as f:
            f.write(f"{os.path.abspath(w)}: " + open(f"{w}/machine.txt").read().replace("\n", "; ").rstrip("; ") + "\n")
    for regime, rel in kept:
        print(f"kept {rel}")
    print(f"{led}: {len(held)} cells")


if __name__ == "__main__":
    main()
