#!/usr/bin/env python3
"""tests/db/dataset_diff.py A.db B.db — are two magpie datasets the same, row by row, whatever
their id numbering? Each table is rewritten with natural keys in place of ids (a slide by its
path, a patch by its slide and grid cell, a class by its name) and compared as a sorted list of
rows. Timestamps (started_at, finished_at, created_at) are ignored: they say when, not what.
A table this script does not know is a difference (so a new table cannot slip past unchecked).
Prints the first differences and exits 1 when they differ, 0 when equal."""
import hashlib
import sqlite3
import sys

TIMES = {"started_at", "finished_at", "created_at", "imported_at"}
KNOWN = {"meta", "classes", "slides", "patches", "images", "tile_errors", "patch_labels", "splits", "predictions",
         "label_imports", "region_annotations", "slide_labels", "folds"}


def cols(c, t):
    return [r[1] for r in c.execute(f"PRAGMA table_info({t})")]


def val(v):
    # blobs by content hash, floats exactly (repr), so identical bytes compare equal
    if isinstance(v, bytes):
        return "blob:" + hashlib.sha256(v).hexdigest()[:16]
    return repr(v)


def canon(path):
    c = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    slide = {i: p for i, p in c.execute("SELECT id, path FROM slides")}
    cls = {i: n for i, n in c.execute("SELECT id, name FROM classes")}
    patch = {i: (slide.get(s), gx, gy) for i, s, gx, gy in c.execute("SELECT id, slide_id, gx, gy FROM patches")}
    tabs = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    imp = {}
    if "label_imports" in tabs:  # an import by what it was: kind, file, slide
        imp = {i: (k, src, slide.get(s)) for i, k, src, s in c.execute("SELECT id, kind, source, slide_id FROM label_imports")}
    out = {}
    tables = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
    for t in tables:
        names = cols(c, t)
        rows = []
        for r in c.execute(f"SELECT * FROM {t}"):
            d = dict(zip(names, r))
            for k in TIMES:
                d.pop(k, None)
            if t not in KNOWN:
                pass
            elif t == "slides":
                d.pop("id")
            elif t == "patches":
                d.pop("id")
                d["slide_id"] = slide.get(d["slide_id"])
            elif t in ("images",):
                d["patch_id"] = patch.get(d["patch_id"])
            elif t == "patch_labels":
                d["patch_id"] = patch.get(d["patch_id"])
                d["class_id"] = cls.get(d["class_id"])
                src = d.get("source") or ""
                if src.startswith("import:") and src[7:].isdigit():
                    d["source"] = ("import", imp.get(int(src[7:])))
            elif t == "label_imports":
                d.pop("id")
                d["slide_id"] = slide.get(d["slide_id"])
            elif t == "region_annotations":
                d.pop("id")
                d["import_id"] = imp.get(d["import_id"])
                d["slide_id"] = slide.get(d["slide_id"])
                d["class_id"] = cls.get(d["class_id"])
            elif t == "slide_labels":
                d["slide_id"] = slide.get(d["slide_id"])
                d["import_id"] = imp.get(d["import_id"])
            elif t == "folds":
                d["slide_id"] = slide.get(d["slide_id"])
            elif t in ("tile_errors", "splits"):
                d["slide_id"] = slide.get(d["slide_id"])
            elif t == "classes":
                d.pop("id")
            elif t == "predictions":
                d.pop("id")
                d["slide_id"] = slide.get(d["slide_id"]) if d["slide_id"] is not None else None
            rows.append(tuple(f"{k}={val(d[k])}" for k in sorted(d)))
        out[t] = sorted(rows)
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: dataset_diff.py A.db B.db")
    a, b = canon(sys.argv[1]), canon(sys.argv[2])
    bad = []
    for t in sorted(set(a) | set(b)):
        if t not in KNOWN and (a.get(t) or b.get(t)):
            bad.append(f"table {t}: not known to dataset_diff.py (teach it the table's keys)")
            continue
        ra, rb = a.get(t, []), b.get(t, [])
        if ra == rb:
            continue
        sa, sb = set(ra), set(rb)
        bad.append(f"table {t}: {len(ra)} vs {len(rb)} rows")
        for r in sorted(sa - sb)[:3]:
            bad.append(f"  only in {sys.argv[1]}: {' '.join(r)[:300]}")
        for r in sorted(sb - sa)[:3]:
            bad.append(f"  only in {sys.argv[2]}: {' '.join(r)[:300]}")
    if bad:
        print("\n".join(bad[:40]))
        sys.exit(1)
    print(f"same: {', '.join(f'{t} {len(a[t])}' for t in sorted(a))}")


if __name__ == "__main__":
    main()
