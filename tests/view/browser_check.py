"""magpie view in headless Chromium: browser_check.py PORT INFER_DIR SHOT_DIR
INFER_DIR's probability.tif has been rewritten with a known pattern (view_browser.sh). The page
opens, zooms onto the grid, and the heatmap is toggled on at opacity 1: at each visible cell's
centre the screenshot shows the colour map's colour of that cell's probability, and the slide
itself where the cell was not evaluated; toggled off, the slide again. Exit 77 if the browser
cannot start."""
import json
import os
import sys
import tempfile
import time

import numpy as np
import tifffile
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cdp  # noqa: E402

port, infer_dir, shot_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
fails = []


def no(msg):
    fails.append(msg)
    print("FAIL: " + msg)


exe = cdp.find_browser()
if not exe:
    print("SKIP: no chromium (apt-get install chromium; tools/install-deps.sh)")
    sys.exit(77)
profile = tempfile.mkdtemp(prefix="mp_view_chromium.")
log = open(os.path.join(shot_dir, "browser.log"), "wb")
try:
    b = cdp.Browser(exe, profile, 1200, 800, log=log)
except Exception as e:  # noqa: BLE001
    print("SKIP: %s did not start: %s" % (exe, e))
    sys.exit(77)

pred = json.load(open(os.path.join(infer_dir, "prediction.json")))
g = pred["grid"]
prob = tifffile.imread(os.path.join(infer_dir, "probability.tif"))  # ny x nx x K, uint8
K = prob.shape[2]
klass = 2
try:
    base = "http://127.0.0.1:%d/" % port
    b.navigate(base + "#s=0")
    state = b.wait("document.body && document.body.dataset.ready")
    if state != "1":
        raise RuntimeError("page: " + str(state))
    lut = b.eval("fetch('/api/colormap/viridis').then(r => r.json())")
    # viridis' known ends (matplotlib): the map is the one infer uses, not a look-alike
    if lut[0] != [68, 1, 84] or lut[255] != [253, 231, 37]:
        no("colour map ends %s %s" % (lut[0], lut[255]))
    b.wait("window.magpie.ready()")
    # zoom onto a 6 x 4 cell block in the middle of the grid
    cx, cy = g["origin_x"] + g["cell_level0_px"] * g["width"] / 2, g["origin_y"] + g["cell_level0_px"] * g["height"] / 2
    b.eval("window.magpie.lookAt(%f, %f, %f)" % (cx, cy, 6 * g["cell_level0_px"]))
    time.sleep(0.6)
    b.wait("window.magpie.ready()")
    b.screenshot(os.path.join(shot_dir, "off.png"))
    b.eval("window.magpie.heat(true, %d, 1.0)" % klass)
    time.sleep(0.3)
    b.wait("window.magpie.ready()")
    b.screenshot(os.path.join(shot_dir, "on.png"))
    b.eval("window.magpie.heat(false)")
    time.sleep(0.3)
    b.wait("window.magpie.ready()")
    b.screenshot(os.path.join(shot_dir, "off2.png"))
    # the navigator (the small overview, bottom left) covers part of the view
    nav = b.eval("(() => { const r = window.magpie.viewer.navigator.element.getBoundingClientRect(); "
                 "return [r.left, r.top, r.right, r.bottom]; })()")
    cells = []
    for j in range(g["height"]):
        for i in range(g["width"]):
            x = g["origin_x"] + (i + 0.5) * g["cell_level0_px"]
            y = g["origin_y"] + (j + 0.5) * g["cell_level0_px"]
            p = b.eval("window.magpie.toPage(%f, %f)" % (x, y))
            under_nav = nav[0] - 2 <= p["x"] <= nav[2] + 2 and nav[1] - 2 <= p["y"] <= nav[3] + 2
            if 5 <= p["x"] < 900 and 50 <= p["y"] < 790 and not under_nav:
                cells.append((i, j, int(round(p["x"])), int(round(p["y"]))))
    off = np.array(Image.open(os.path.join(shot_dir, "off.png")).convert("RGB")).astype(int)
    on = np.array(Image.open(os.path.join(shot_dir, "on.png")).convert("RGB")).astype(int)
    off2 = np.array(Image.open(os.path.join(shot_dir, "off2.png")).convert("RGB")).astype(int)
    coloured = clear = 0
    for i, j, x, y in cells:
        v = prob[j, i]
        got = on[y, x]
        if v.any():
            want = np.array(lut[int(v[klass])])
            if np.abs(got - want).max() > 4:
                no("cell %d,%d at (%d,%d): %s on screen, heatmap says %s (p=%d/255)" % (i, j, x, y, got, want, v[klass]))
            coloured += 1
        else:
            if np.abs(got - off[y, x]).max() > 4:
                no("cell %d,%d not evaluated: %s on screen with the heatmap, %s without" % (i, j, got, off[y, x]))
            clear += 1
        if np.abs(off2[y, x] - off[y, x]).max() > 4:
            no("cell %d,%d: toggled off, %s, not the slide's %s" % (i, j, off2[y, x], off[y, x]))
    distinct = len({int(prob[j, i, klass]) for i, j, _, _ in cells if prob[j, i].any()})
    print("browser: %d cells on screen, %d coloured (%d distinct values), %d clear" % (len(cells), coloured, distinct, clear))
    if coloured < 6 or clear < 1 or distinct < 4:
        no("too few cells to judge: %d coloured (%d distinct), %d clear" % (coloured, distinct, clear))
    errs = b.console_errors()
    if errs:
        no("console errors: %s" % errs[:3])
finally:
    b.close()
sys.exit(1 if fails else 0)
