"""Read heatmap.tif and probability.tif of one `magpie infer` output directory with the readers
users have: OpenSlide (openslide-python), PIL, tifffile; and tiff2rgba's output (OUT/t2r.tif).
Every reader must return the samples stored in the file (tifffile decodes them without any
colour interpretation). Prints one line per failure and exits 1 on any; 0 when all agree.
usage: heatmap_readers.py DIR T2R_TIF"""
import json
import sys

import numpy as np
import openslide
import tifffile
from PIL import Image

d, t2r = sys.argv[1], sys.argv[2]
fails = []


def check(ok, what):
    if not ok:
        fails.append(what)


heat, prob = d + "/heatmap.tif", d + "/probability.tif"
with tifffile.TiffFile(heat) as tf:
    raw = [p.asarray() for p in tf.pages]
    desc = json.loads(tf.pages[0].description)
with tifffile.TiffFile(prob) as tf:
    praw = [p.asarray() for p in tf.pages]
    ptags = [(p.tags["XResolution"].value, p.tags["XPosition"].value) for p in tf.pages]
with tifffile.TiffFile(heat) as tf:
    htags = [(p.tags["XResolution"].value, p.tags["XPosition"].value) for p in tf.pages]
nx, ny, K = desc["grid_width"], desc["grid_height"], len(desc["classes"])
check(len(raw) >= 2, f"heatmap.tif has {len(raw)} levels; the test wants a pyramid")

# OpenSlide: every level, every pixel (straight RGBA back from premultiplied ARGB)
o = openslide.OpenSlide(heat)
check(o.level_count == len(raw), f"openslide level count {o.level_count} != {len(raw)} pages")
for lv in range(min(o.level_count, len(raw))):
    w, h = o.level_dimensions[lv]
    check((h, w) == raw[lv].shape[:2], f"level {lv}: openslide {w}x{h}, file {raw[lv].shape[1]}x{raw[lv].shape[0]}")
    check(o.level_downsamples[lv] == 2.0**lv, f"level {lv}: openslide downsample {o.level_downsamples[lv]}")
    got = np.asarray(o.read_region((0, 0), lv, (w, h)))
    if got.shape == raw[lv].shape:
        n = int((got != raw[lv]).any(-1).sum())
        check(n == 0, f"level {lv}: openslide differs from the file in {n} pixels")
o.close()

# PIL: RGBA, every page
im = Image.open(heat)
check(im.mode == "RGBA", f"PIL mode {im.mode}")
for lv in range(len(raw)):
    im.seek(lv)
    a = np.asarray(im.convert("RGBA"))
    check(a.shape == raw[lv].shape and np.array_equal(a, raw[lv]), f"level {lv}: PIL pixels differ")

# tiff2rgba (libtiff's RGBA reader, as OpenSlide uses) wrote level 0 with associated alpha
a = tifffile.imread(t2r)
check(a.shape == raw[0].shape and np.array_equal(a, raw[0]), "tiff2rgba output differs from level 0")

# probability.tif: tifffile gives (ny, nx, K) per level; registered like heatmap.tif (same
# resolution and position per level); transparent exactly where no class has a value
check(praw[0].shape == (ny, nx, K), f"probability.tif level 0 shape {praw[0].shape}, want {(ny, nx, K)}")
check(len(praw) == len(raw), f"probability.tif has {len(praw)} levels, heatmap.tif {len(raw)}")
check(ptags == htags, f"resolution/position tags differ: {ptags} vs {htags}")
for lv in range(min(len(praw), len(raw))):
    p = praw[lv]
    if p.ndim == 2:
        p = p[..., None]
    h, w = p.shape[:2]
    alpha = raw[lv][:h, :w, 3]
    check(np.array_equal(alpha > 0, p.max(-1) > 0), f"level {lv}: alpha and probability.tif disagree on evaluated cells")
    check(not raw[lv][h:].any() and not raw[lv][:, w:].any(), f"level {lv}: heatmap margin not transparent")
    if lv == 0 and p.dtype == np.uint8:
        s = p.astype(int).sum(-1)[p.max(-1) > 0]
        check(s.size > 0 and abs(s - 255).max() <= K, "probabilities do not sum to 1")

for f in fails:
    print("FAIL:", f)
print(f"heatmap readers: {len(raw)} levels, {nx}x{ny} cells, {K} classes: {'ok' if not fails else 'FAILED'}")
sys.exit(1 if fails else 0)
