"""magpie view in headless Chromium: browser_check.py PORT INFER_DIR SHOT_DIR RUN_DIR
INFER_DIR's probability.tif has been rewritten with a known pattern (view_browser.sh). The page
opens, zooms onto the grid, and the heatmap is toggled on at opacity 1: at each visible cell's
centre the screenshot shows the colour map's colour of that cell's probability, and the slide
itself where the cell was not evaluated; toggled off, the slide again. RUN_DIR is a `magpie run`
of the same slide, served too: the tissue mask layer tints the mask's tissue pixels and nothing
else; the patch grid is drawn at the dataset's patch edges, and a mouse move over a cell shows
that cell's probabilities and the patch under it; the patch browser filtered with a query shows
the dataset's count and images; the report link opens the run's report in a tab of its own,
its script running and its origin opaque. Exit 77 if the browser cannot start."""
import io
import json
import os
import re
import sqlite3
import sys
import tempfile
import time
import urllib.request

import numpy as np
import tifffile
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cdp  # noqa: E402

port, infer_dir, shot_dir, run_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
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

    def shot(name):
        b.screenshot(os.path.join(shot_dir, name))
        return np.array(Image.open(os.path.join(shot_dir, name)).convert("RGB")).astype(int)

    def on_screen(p):
        under_nav = nav[0] - 2 <= p["x"] <= nav[2] + 2 and nav[1] - 2 <= p["y"] <= nav[3] + 2
        return 5 <= p["x"] < 900 and 50 <= p["y"] < 790 and not under_nav

    def settle():
        time.sleep(0.6)
        b.wait("window.magpie.ready()")

    # ---- the tissue mask layer: the whole slide, mask off then on ----
    b.eval("void window.magpie.viewer.viewport.goHome(true)")
    settle()
    nav = b.eval("(() => { const r = window.magpie.viewer.navigator.element.getBoundingClientRect(); "
                 "return [r.left, r.top, r.right, r.bottom]; })()")
    m_off = shot("mask_off.png")
    if not b.eval("window.magpie.mask(true)"):
        no("the mask layer did not open")
    settle()
    m_on = shot("mask_on.png")
    mj = json.load(urllib.request.urlopen("http://127.0.0.1:%d/s/0/mask.json" % port))
    mpng = np.array(Image.open(io.BytesIO(urllib.request.urlopen("http://127.0.0.1:%d/s/0/mask.png" % port).read())))
    tissue = mpng[:, :, 3] > 0
    green, alpha = np.array([0, 200, 90]), 0.35  # view.js: the mask's colour and opacity
    n_t = n_b = 0
    for my in range(2, tissue.shape[0] - 2, 3):
        for mx in range(2, tissue.shape[1] - 2, 3):
            blk = tissue[my - 2:my + 3, mx - 2:mx + 3]
            if blk.all() != blk.any():
                continue  # an edge: the drawn image blends neighbours there
            p = b.eval("window.magpie.toPage(%f, %f)" % ((mx + 0.5) * mj["downsample"], (my + 0.5) * mj["downsample"]))
            if not on_screen(p):
                continue
            x, y = int(round(p["x"])), int(round(p["y"]))
            want = m_off[y, x] * (1 - alpha) + green * alpha if blk.all() else m_off[y, x]
            if np.abs(m_on[y, x] - want).max() > 6:
                no("mask pixel %d,%d (%s) at (%d,%d): %s on screen, want %s" %
                   (mx, my, "tissue" if blk.all() else "background", x, y, m_on[y, x], want.round()))
            if blk.all():
                n_t += 1
            else:
                n_b += 1
    print("mask: %d tissue and %d background mask pixels checked on screen" % (n_t, n_b))
    if n_t < 20 or n_b < 20:
        no("too few mask pixels to judge: %d tissue, %d background" % (n_t, n_b))
    b.eval("window.magpie.mask(false)")

    # ---- the patch grid and the hover text ----
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(run_dir, "dataset.db"), uri=True)
    patches = con.execute("SELECT id, x0, y0, size0, tissue FROM patches ORDER BY id").fetchall()
    b.eval("window.magpie.lookAt(%f, %f, %f)" % (cx, cy, 6 * g["cell_level0_px"]))
    settle()
    grid_off = shot("grid_off.png")
    n_grid = b.eval("window.magpie.patchGrid(true)")
    if n_grid != len(patches):
        no("patch grid: %s patches, the dataset has %d" % (n_grid, len(patches)))
    settle()
    grid_on = shot("grid_on.png")
    edges = dark = 0
    for pid, x0, y0, size0, t in patches:
        p = b.eval("window.magpie.toPage(%f, %f)" % (x0, y0 + size0 / 2))  # a left edge's middle
        if not on_screen(p):
            continue
        x, y = int(round(p["x"])), int(round(p["y"]))
        edges += 1
        # the line is drawn dark and 1 px wide at x + 0.5: darker within a pixel either way
        dark += min(grid_on[y, x + d].sum() - grid_off[y, x + d].sum() for d in (-1, 0, 1)) < -30
    print("grid: %d of %d patch edges on screen drawn" % (dark, edges))
    if edges < 4 or dark < edges * 0.9:
        no("patch grid: %d of %d patch edges drawn" % (dark, edges))
    # hover: a patch's centre inside an evaluated cell, away from the cell's edges
    target = None
    for pid, x0, y0, size0, t in patches:
        X, Y = x0 + size0 / 2, y0 + size0 / 2
        fi, fj = (X - g["origin_x"]) / g["cell_level0_px"], (Y - g["origin_y"]) / g["cell_level0_px"]
        i, j = int(np.floor(fi)), int(np.floor(fj))
        if not (0 <= i < g["width"] and 0 <= j < g["height"]) or not prob[j, i].any():
            continue
        if min(fi - i, fj - j, 1 - (fi - i), 1 - (fj - j)) < 0.2:
            continue
        p = b.eval("window.magpie.toPage(%f, %f)" % (X, Y))
        if on_screen(p):
            target = (pid, t, i, j, p)
            break
    if not target:
        no("no patch centre over an evaluated cell on screen")
    else:
        pid, t, i, j, p = target
        b.call("Input.dispatchMouseEvent", type="mouseMoved", x=p["x"], y=p["y"])
        try:
            text = b.wait("(() => { const t = document.getElementById('info').textContent; "
                          "return t.includes('cell ') ? t : ''; })()", timeout=10)
        except RuntimeError:
            text = b.eval("document.getElementById('info').textContent")
        lines = text.split("\n")
        if "cell %d,%d" % (i, j) not in lines:
            no("hover over cell %d,%d: %r" % (i, j, text))
        for k, name in enumerate(pred["classes"]):
            m = [ln for ln in lines if re.match(r"^  %s +[0-9.]+$" % re.escape(name), ln)]
            got = float(m[0].split()[-1]) if m else None
            if got is None or abs(got - prob[j, i, k] / 255) > 0.0011:
                no("hover, class %s: %s, probability.tif says %.4f (%r)" % (name, got, prob[j, i, k] / 255, text))
        if "patch %d  tissue %.2f" % (pid, t) not in lines:
            no("hover over patch %d (tissue %.2f): %r" % (pid, t, text))
        print("hover: %r" % text)
    b.eval("window.magpie.patchGrid(false)")

    errs = b.console_errors()
    if errs:
        no("console errors: %s" % errs[:3])

    # ---- the patch browser, filtered ----
    want = con.execute("SELECT count(*) FROM patches WHERE tissue > 0.9").fetchone()[0]
    b.eval("location.hash = 'd=0'")
    b.wait("!document.getElementById('patches-pane').hidden")
    b.wait("document.getElementById('qcount').textContent")  # the unfiltered first page, then the filter
    b.eval("document.getElementById('qcount').textContent = ''; document.getElementById('q').value = 'tissue > 0.9'; "
           "document.getElementById('qform').requestSubmit()")
    try:
        count = b.wait("(() => { const t = document.getElementById('qcount').textContent; "
                       "return /^\\d+ patches/.test(t) ? t : ''; })()",
                       timeout=20)
    except RuntimeError:
        count = b.eval("document.getElementById('qcount').textContent + ' / ' + document.getElementById('qerr').textContent")
    if not count.startswith("%d patches" % want):
        no("patch browser, tissue > 0.9: %r, the dataset has %d" % (count, want))
    b.wait("[...document.querySelectorAll('#thumbs img')].every(i => i.complete)", timeout=30)
    imgs = b.eval("[...document.querySelectorAll('#thumbs img')].map(i => [i.alt, i.naturalWidth])")
    caps = b.eval("[...document.querySelectorAll('#thumbs .patch div')].map(d => d.textContent)")
    if len(imgs) != min(60, want) or not all(w > 0 for _, w in imgs):
        no("patch browser: %d images (%d decoded), want %d" % (len(imgs), sum(w > 0 for _, w in imgs), min(60, want)))
    tvals = [float(re.search(r"tissue ([0-9.]+)", c).group(1)) for c in caps]
    if not tvals or min(tvals) < 0.9:
        no("patch browser: a patch with tissue %s shown for tissue > 0.9" % (min(tvals) if tvals else None))
    shot("patches.png")
    b.eval("document.getElementById('q').value = 'tissue >'; document.getElementById('qform').requestSubmit()")
    qerr = b.wait("document.getElementById('qerr').textContent", timeout=10)
    if "column" not in qerr and "expect" not in qerr:
        no("a bad query shows %r" % qerr)
    print("patches: %s, %d images, a bad query says %r" % (count, len(imgs), qerr))

    # ---- the report link: a real click opens the report in its own tab ----
    href = b.eval("(() => { const a = document.getElementById('report-0'); return a ? [a.getAttribute('href'), a.target] : null; })()")
    if href != ["/r/0/report.html", "_blank"]:
        no("report link: %s" % href)
    else:
        r = b.eval("(() => { const r = document.getElementById('report-0').getBoundingClientRect(); "
                   "return [r.left + r.width / 2, r.top + r.height / 2]; })()")
        for t in ("mousePressed", "mouseReleased"):
            b.call("Input.dispatchMouseEvent", type=t, x=r[0], y=r[1], button="left", clickCount=1)
        tid = None
        end = time.time() + 20
        while time.time() < end and not tid:
            for ti in b.call("Target.getTargets")["targetInfos"]:
                if ti["type"] == "page" and ti["url"].endswith("/r/0/report.html"):
                    tid = ti["targetId"]
            time.sleep(0.2)
        if not tid:
            no("clicking the report link opened no tab with the report")
        else:
            main_session = b.session
            b.session = b.call("Target.attachToTarget", targetId=tid, flatten=True)["sessionId"]
            try:
                ready = b.wait("document.body && document.body.getAttribute('data-ready')", timeout=20)
                rows = b.eval("document.getElementById('slides').tBodies[0].rows.length")
                origin = b.eval("self.origin")
                leak = b.eval("fetch('/api/catalog').then(r => r.text()).then(t => 'read ' + t.length, e => 'refused')")
            finally:
                b.session = main_session
            # its own sort script ran (scripts allowed), with an origin of its own that reads nothing
            if ready != "1" or rows != 1 or origin != "null" or leak != "refused":
                no("report tab: ready %r, %r slide rows, origin %r, fetch of the catalog %r" % (ready, rows, origin, leak))
            print("report: opened in its own tab, %d slide row, origin %s, catalog fetch %s" % (rows, origin, leak))
finally:
    b.close()
sys.exit(1 if fails else 0)
