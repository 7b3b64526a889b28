// magpie view's page: one OpenSeadragon viewer with the slide, its heatmap (a second Deep Zoom
// layer in the slide's frame), the tissue mask and the patch grid, plus a patch browser over a
// dataset. Everything comes from this server; window.magpie is the handle the tests drive.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const state = { catalog: null, slide: null, grid: null, patches: null, buckets: null, heatItem: null,
                  maskItem: null, dataset: null, offset: 0, limit: 60, count: 0 };
  let viewer = null;

  function status(msg) { $("status").textContent = msg || ""; }

  async function getJSON(url) {
    const r = await fetch(url);
    if (!r.ok) throw new Error(url + ": " + (await r.text()).trim());
    return r.json();
  }

  function hashArgs() {
    const a = {};
    for (const kv of location.hash.replace(/^#/, "").split("&")) {
      if (!kv) continue;
      const i = kv.indexOf("=");
      a[decodeURIComponent(i < 0 ? kv : kv.slice(0, i))] = i < 0 ? "" : decodeURIComponent(kv.slice(i + 1));
    }
    return a;
  }

  // ---- the slide viewer ----
  function slideItem() { return viewer && viewer.world.getItemCount() ? viewer.world.getItemAt(0) : null; }

  function ready() {
    if (!viewer || !viewer.world.getItemCount()) return false;
    for (let i = 0; i < viewer.world.getItemCount(); i++)
      if (!viewer.world.getItemAt(i).getFullyLoaded()) return false;
    return true;
  }

  function drawBar(name) {
    return getJSON("/api/colormap/" + name).then((lut) => {
      const c = $("bar").getContext("2d"), img = c.createImageData(256, 14);
      for (let x = 0; x < 256; x++)
        for (let y = 0; y < 14; y++) img.data.set([lut[x][0], lut[x][1], lut[x][2], 255], 4 * (y * 256 + x));
      c.putImageData(img, 0, 0);
    });
  }

  function removeItem(it) { if (it) viewer.world.removeItem(it); }

  function addLayer(opts) {
    return new Promise((resolve, reject) => {
      opts.success = (e) => resolve(e.item);
      opts.error = (e) => reject(new Error(e.message || "layer failed"));
      viewer.addTiledImage(opts);
    });
  }

  async function setHeat() {
    const s = state.slide;
    removeItem(state.heatItem);
    state.heatItem = null;
    if (!s || !s.heatmap || !$("heat").checked) return;
    const k = +$("klass").value;
    const item = await addLayer({ tileSource: "/s/" + s.id + "/heat/" + k + ".dzi", x: 0, y: 0, width: 1,
                                  opacity: $("opacity").value / 100 });
    if (state.slide !== s || !$("heat").checked || +$("klass").value !== k) { removeItem(item); return; }
    state.heatItem = item;
  }

  async function setMask() {
    const s = state.slide;
    removeItem(state.maskItem);
    state.maskItem = null;
    if (!s || !$("mask").checked) return;
    try {
      const m = await getJSON("/s/" + s.id + "/mask.json");
      const item = await addLayer({ tileSource: { type: "image", url: "/s/" + s.id + "/mask.png" }, x: 0, y: 0,
                                    width: m.width * m.downsample / s.width, opacity: 0.35 });
      if (state.slide !== s || !$("mask").checked) { removeItem(item); return; }
      state.maskItem = item;
    } catch (e) { status(e.message); $("mask").checked = false; }
  }

  // patch grid: the dataset's squares, drawn on a canvas over the viewer
  const overlay = document.createElement("canvas");
  function drawGrid() {
    const el = $("osd");
    overlay.width = el.clientWidth;
    overlay.height = el.clientHeight;
    const c = overlay.getContext("2d");
    c.clearRect(0, 0, overlay.width, overlay.height);
    const it = slideItem();
    if (!it || !$("grid").checked || !state.patches) return;
    c.strokeStyle = "rgba(0, 0, 0, 0.55)";
    c.lineWidth = 1;
    for (const p of state.patches) {
      const a = it.imageToViewerElementCoordinates(new OpenSeadragon.Point(p[1], p[2]));
      const b = it.imageToViewerElementCoordinates(new OpenSeadragon.Point(p[1] + p[3], p[2] + p[3]));
      if (b.x < 0 || b.y < 0 || a.x > overlay.width || a.y > overlay.height) continue;
      c.strokeRect(a.x + 0.5, a.y + 0.5, b.x - a.x - 1, b.y - a.y - 1);
    }
  }

  async function setGrid() {
    const s = state.slide;
    if ($("grid").checked && s && !state.patches) {
      try {
        const r = await getJSON("/s/" + s.id + "/patches.json");
        if (state.slide !== s) return;
        state.patches = r.patches;
        state.buckets = new Map();
        for (const p of r.patches) {
          const key = Math.floor(p[1] / p[3]) + "," + Math.floor(p[2] / p[3]);
          state.buckets.set(key, (state.buckets.get(key) || []).concat([p]));
        }
      } catch (e) { status(e.message); $("grid").checked = false; }
    }
    drawGrid();
  }

  function patchAt(x, y) {
    if (!state.patches || !state.patches.length) return null;
    const sz = state.patches[0][3], gx = Math.floor(x / sz), gy = Math.floor(y / sz);
    for (let dx = -1; dx <= 1; dx++)
      for (let dy = -1; dy <= 1; dy++)
        for (const p of state.buckets.get((gx + dx) + "," + (gy + dy)) || [])
          if (x >= p[1] && x < p[1] + p[3] && y >= p[2] && y < p[2] + p[3]) return p;
    return null;
  }

  function hover(pos) {
    const it = slideItem(), s = state.slide;
    if (!it || !s) return;
    const q = it.viewerElementToImageCoordinates(pos);
    const lines = ["x " + Math.round(q.x) + "  y " + Math.round(q.y)];
    if (s.mpp) lines[0] += "  (" + (q.x * s.mpp / 1000).toFixed(2) + ", " + (q.y * s.mpp / 1000).toFixed(2) + " mm)";
    const g = state.grid;
    if (g) {
      const i = Math.floor((q.x - g.ox) / g.cell0), j = Math.floor((q.y - g.oy) / g.cell0);
      if (i >= 0 && j >= 0 && i < g.nx && j < g.ny) {
        const p = g.p[j * g.nx + i];
        lines.push("cell " + i + "," + j + (p ? "" : "  not evaluated"));
        if (p) g.classes.forEach((c, k) => lines.push("  " + c.padEnd(12) + (p[k] / 1000).toFixed(3)));
      }
    }
    const pt = patchAt(q.x, q.y);
    if (pt) lines.push("patch " + pt[0] + "  tissue " + pt[4].toFixed(2));
    $("info").textContent = lines.join("\n");
  }

  async function openSlide(id) {
    const s = state.catalog.slides.find((x) => x.id === id);
    if (!s) return;
    state.slide = s;
    state.grid = state.patches = state.buckets = state.heatItem = state.maskItem = null;
    $("slide").value = String(id);
    viewer.open("/s/" + id + "/slide.dzi");
    await new Promise((r) => viewer.addOnceHandler("open", r));
    $("heat-box").disabled = !s.heatmap;
    $("grid").disabled = !s.dataset;
    $("klass").innerHTML = "";
    if (s.heatmap) {
      try {
        state.grid = await getJSON("/s/" + id + "/grid.json");
        state.grid.classes.forEach((c, k) => $("klass").add(new Option(c, k)));
        $("klass").value = String(state.grid.klass);
        await drawBar(state.grid.cmap);
      } catch (e) { status(e.message); }
    }
    await Promise.all([setHeat(), setMask(), setGrid()]);
  }

  // ---- the patch browser ----
  function caption(r) {
    const t = [r.slide + " #" + r.id, (r.label || "unlabelled") + " / " + (r.split || "unsplit"),
               "tissue " + (r.tissue == null ? "-" : r.tissue.toFixed(2))];
    if (r.prediction) t.push(r.prediction + " " + r.confidence.toFixed(2));
    return t.join("\n");
  }

  async function runQuery() {
    const d = state.dataset;
    if (d == null) return;
    const url = "/d/" + d + "/query?q=" + encodeURIComponent($("q").value) + "&offset=" + state.offset +
                "&limit=" + state.limit;
    $("qerr").textContent = "";
    let r;
    try { r = await getJSON(url); } catch (e) { $("qerr").textContent = e.message; return; }
    state.count = r.count;
    $("qcount").textContent = r.count + " patches" + (r.count ? ", " + (r.offset + 1) + "-" +
                               (r.offset + r.rows.length) : "");
    const box = $("thumbs");
    box.innerHTML = "";
    for (const row of r.rows) {
      const div = document.createElement("div"), img = document.createElement("img"), cap = document.createElement("div");
      div.className = "patch";
      img.src = "/d/" + d + "/img/" + row.id;
      img.alt = "patch " + row.id;
      cap.textContent = caption(row);
      cap.style.whiteSpace = "pre";
      div.append(img, cap);
      if (row.view_slide != null)
        div.onclick = () => { location.hash = "s=" + row.view_slide + "&x=" + (row.x0 + row.size0 / 2) +
                                                "&y=" + (row.y0 + row.size0 / 2) + "&w=" + row.size0 * 4; };
      box.append(div);
    }
  }

  function showTab(which) {
    $("slide-pane").hidden = which !== "slide";
    $("patches-pane").hidden = which !== "patches";
    $("tab-slide").classList.toggle("on", which === "slide");
    $("tab-patches").classList.toggle("on", which === "patches");
  }

  // level-0 point (x, y) centred with w level-0 px across the view
  function lookAt(x, y, w) {
    const it = slideItem();
    if (!it) return;
    const r = it.imageToViewportRectangle(x - w / 2, y - w / 2, w, w);
    viewer.viewport.fitBounds(r, true);
  }

  async function fromHash() {
    const a = hashArgs();
    if (a.d != null && state.catalog.datasets.length) {
      state.dataset = +a.d;
      $("dataset").value = a.d;
      if (a.q != null) $("q").value = a.q;
      showTab("patches");
      state.offset = 0;
      return runQuery();
    }
    showTab("slide");
    const id = a.s != null ? +a.s : state.catalog.slides.length ? state.catalog.slides[0].id : null;
    if (id == null) return;
    if (!state.slide || state.slide.id !== id) await openSlide(id);
    if (a.x != null) lookAt(+a.x, +a.y, +(a.w || 2000));
  }

  async function main() {
    if (window.MAGPIE_NO_OSD || !window.OpenSeadragon) {
      status(window.MAGPIE_NO_OSD || "OpenSeadragon did not load");
      document.body.dataset.ready = "no-osd";
      return;
    }
    state.catalog = await getJSON("/api/catalog");
    for (const s of state.catalog.slides) $("slide").add(new Option(s.name + (s.heatmap ? " (heatmap)" : ""), s.id));
    for (const d of state.catalog.datasets) $("dataset").add(new Option(d.name, d.id));
    $("dataset").disabled = !state.catalog.datasets.length;
    // a run's report opens in its own tab; the server sandboxes it (an origin of its own)
    for (const r of state.catalog.reports || []) {
      const a = document.createElement("a");
      a.href = r.url;
      a.id = "report-" + r.id;
      a.target = "_blank";
      a.rel = "noopener";
      a.textContent = "report " + r.name;
      $("reports").append(a);
    }
    $("tab-patches").hidden = !state.catalog.datasets.length;
    viewer = OpenSeadragon({ element: $("osd"), showNavigationControl: false, showNavigator: true,
                             navigatorPosition: "BOTTOM_LEFT", maxZoomPixelRatio: 4, crossOriginPolicy: false,
                             animationTime: 0.4, preserveViewport: false, drawer: "canvas" });
    $("osd").appendChild(overlay);
    overlay.style.cssText = "position:absolute;left:0;top:0;pointer-events:none;z-index:5";
    viewer.addHandler("update-viewport", drawGrid);
    new OpenSeadragon.MouseTracker({ element: viewer.canvas, moveHandler: (e) => hover(e.position) });
    $("slide").onchange = () => { location.hash = "s=" + $("slide").value; };
    $("dataset").onchange = () => { location.hash = "d=" + $("dataset").value; };
    $("tab-slide").onclick = (e) => { e.preventDefault(); location.hash = state.slide ? "s=" + state.slide.id : ""; };
    $("tab-patches").onclick = (e) => { e.preventDefault(); location.hash = "d=" + ($("dataset").value || 0); };
    $("heat").onchange = setHeat;
    $("klass").onchange = setHeat;
    $("mask").onchange = setMask;
    $("grid").onchange = setGrid;
    $("opacity").oninput = () => { if (state.heatItem) state.heatItem.setOpacity($("opacity").value / 100); };
    $("zin").onclick = () => viewer.viewport.zoomBy(2);
    $("zout").onclick = () => viewer.viewport.zoomBy(0.5);
    $("home").onclick = () => viewer.viewport.goHome();
    $("qform").onsubmit = (e) => { e.preventDefault(); state.offset = 0; runQuery(); };
    $("prev").onclick = () => { state.offset = Math.max(0, state.offset - state.limit); runQuery(); };
    $("next").onclick = () => { if (state.offset + state.limit < state.count) { state.offset += state.limit; runQuery(); } };
    window.addEventListener("hashchange", fromHash);
    await fromHash();
    document.body.dataset.ready = "1";
  }

  // for tests and scripts: the viewer, readiness, and the controls as functions
  window.magpie = {
    get viewer() { return viewer; },
    ready,
    lookAt,
    async heat(on, klass, opacity) {
      $("heat").checked = on;
      if (klass != null) $("klass").value = String(klass);
      if (opacity != null) $("opacity").value = String(Math.round(opacity * 100));
      await setHeat();
    },
    // where level-0 point (x, y) is on the page, in CSS px
    toPage(x, y) {
      const p = slideItem().imageToViewerElementCoordinates(new OpenSeadragon.Point(x, y));
      const r = $("osd").getBoundingClientRect();
      return { x: p.x + r.left, y: p.y + r.top };
    },
    get grid() { return state.grid; },
    async mask(on) { $("mask").checked = on; await setMask(); return !!state.maskItem; },
    async patchGrid(on) { $("grid").checked = on; await setGrid(); return state.patches ? state.patches.length : 0; },
  };
  main().catch((e) => { status(e.message); document.body.dataset.ready = "error: " + e.message; });
})();
