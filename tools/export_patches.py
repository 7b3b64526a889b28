"""tools/export_patches.py — export a magpie dataset's patches for the PyTorch side-by-side:
one .npz per split (train, val, test, unlabeled) with uint8 NHWC images at each magnification,
labels (patch label, else slide label; -1 for the unlabeled split), slide index and patch id.
Reads the SQLite file with Python's sqlite3 and decodes the JPEG/PNG blobs with PIL.
Usage: /usr/bin/python3 tools/export_patches.py DB OUTDIR [--mags 10,1.25]"""
import io, os, sqlite3, sys

import numpy as np
from PIL import Image


def main():
    db, out = sys.argv[1], sys.argv[2]
    mags = [10.0, 1.25]
    if "--mags" in sys.argv:
        mags = [float(x) for x in sys.argv[sys.argv.index("--mags") + 1].split(",")]
    os.makedirs(out, exist_ok=True)
    c = sqlite3.connect(db)
    classes = [n for _, n in c.execute("SELECT id, name FROM classes ORDER BY id")]
    for split in ("train", "val", "test", "unlabeled"):
        rows = c.execute(
            "SELECT p.id, s.name, cl.id, pl.class_id FROM patches p JOIN slides s ON s.id = p.slide_id "
            "JOIN splits sp ON sp.slide_id = s.id LEFT JOIN classes cl ON cl.name = s.label "
            "LEFT JOIN patch_labels pl ON pl.patch_id = p.id WHERE sp.split = ? ORDER BY s.name, p.id", (split,)).fetchall()
        if not rows:
            continue
        slides = sorted({r[1] for r in rows})
        sidx = {s: i for i, s in enumerate(slides)}
        y = np.array([-1 if split == "unlabeled" else (r[3] if r[3] is not None else (r[2] if r[2] is not None else -1))
                      for r in rows], np.int64)
        arrays = {"y": y, "slide": np.array([sidx[r[1]] for r in rows], np.int64),
                  "patch_id": np.array([r[0] for r in rows], np.int64)}
        for m in mags:
            ims = []
            for r in rows:
                blob = c.execute("SELECT data FROM images WHERE patch_id = ? AND abs(mag - ?) < 1e-3", (r[0], m)).fetchone()
                if blob is None:
                    sys.exit(f"{db}: patch {r[0]} has no image at {m:g}x")
                ims.append(np.asarray(Image.open(io.BytesIO(blob[0])).convert("RGB")))
            arrays[f"mag{m:g}"] = np.stack(ims)
        np.savez(os.path.join(out, f"{split}.npz"), **arrays)
        print(f"{split}: {len(rows)} patches, {len(slides)} slides")
    with open(os.path.join(out, "classes.txt"), "w") as f:
        f.write("\n".join(classes) + "\n")


if __name__ == "__main__":
    main()
