// The map: every encoded image at its UMAP position, drawn by regl-scatterplot (WebGL, vendored
// in static/scatter/) from the points bundles Python sends once per model; a rerun sends only
// small JSON. The star is the current z placed among its nearest means (placeAmongNeighbours),
// drawn with those neighbours and the interpolation's path over the points (map_overlay.js).
// Hovering decodes the latent under the pointer through the live controls; a click on a point
// loads it, on empty space keeps the hovered z; box and lasso select, the search box finds, and
// the selection is dimmed around, exported as CSV and sent to Python as a concept group.
//
// A transparent shield over the canvas takes the pointer: the library would redraw every point
// on each move over one (its hover), ~100 ms a frame in software WebGL. The shield finds the
// point under the pointer itself (MapIndex) and hands the library only a press (pan, box,
// lasso) and the wheel (zoom).

const MAP_HEIGHT = 520; // CSS pixels of the plot
const FAR_GAP = 3; // farther than 3 typical spacings from every point: a sparse region
const CLICK_SLOP_PX = 4; // a press that moves less than this is a click, not a pan
const POINT_REACH_PX = 5; // the pointer is on a point within this distance of its centre
const CARD_REST_MS = 250; // resting this long on a training point asks Python for its image
const DIMMED = 0.15; // the opacity scale of unselected points while some are selected
const MODES = { pan: ["Pan", "panZoom", null], box: ["Box", "lasso", "rectangle"], lasso: ["Lasso", "lasso", "freeform"] };

// resolves once the browser has painted a frame (or after 100 ms, in a tab that paints none)
function afterNextPaint() {
  return new Promise((done) => {
    const timer = setTimeout(done, 100);
    requestAnimationFrame(() => setTimeout(() => { clearTimeout(timer); done(); }, 0));
  });
}

let scatterModule = null;
function loadScatter(url) {
  // absolute: the component's module has no base URL of its own to resolve a path against
  if (!scatterModule) scatterModule = import(new URL(url, window.location.origin).href);
  return scatterModule;
}

class AtlasMap {
  constructor(root) {
    this.layers = []; // [{split, bundle, id, sheetId}]: the test split, then the training split when shown
    this.layerKey = null;
    this.shown = null; // the layers as one points bundle (hover decodes among all shown points)
    this.hidden = new Set(); // classes the legend hides
    this.selection = [];
    this.star = null; // {xy, neighbours}: the star's map position and its nearest means' positions
    this.frame = null; // {cx, cy, half}: the test split's bundle's, whose square the first view shows (frameOf: its id)
    this.frameOf = null;
    this.styleKey = null; // the points' style and frame last set on the library (restyle)
    this.hoverXY = null;
    this.hovering = false;
    this.committed = null;
    this.point = null; // the map row under the pointer, or null
    this.down = null;
    this.clicks = 0; // a click on a point, counted: clicking the same point again is news to Python
    this.trainingImages = new Map(); // training row -> its image (a data URL; null: not on the server)
    this.cardAsks = 0;
    this.drawnAt = null; // when the points were last drawn (ms since navigation)
    this.build(root);
    hub().map = this;
    hub().test.map = this;
  }

  build(root) {
    this.search = el("input", { type: "search", class: "lx-map-search", "aria-label": "Find points",
      placeholder: "Find: a class, #index, train #index, a name" });
    this.search.addEventListener("keydown", (event) => { if (event.key === "Enter") this.find(this.search.value); });
    this.modeButtons = Object.entries(MODES).map(([mode, [label]]) => {
      const button = el("button", { type: "button", class: "lx-map-mode", "data-mode": mode }, [label]);
      button.addEventListener("click", () => this.setMode(mode));
      return button;
    });
    this.exportButton = el("button", { type: "button", class: "lx-map-export", disabled: "" }, ["Export CSV"]);
    this.exportButton.addEventListener("click", () => this.exportSelection());
    const reset = el("button", { type: "button", class: "lx-map-reset" }, ["Reset view"]);
    reset.addEventListener("click", () => this.plot?.zoomToOrigin({ transition: true }));
    this.said = el("span", { class: "lx-map-said", role: "status" });
    this.canvas = el("canvas", { class: "lx-map-canvas" });
    this.shield = el("div", { class: "lx-map-shield" });
    this.plotBox = el("div", { class: "lx-map-plot" }, [this.canvas, this.shield]);
    this.plotBox.style.height = `${MAP_HEIGHT}px`;
    this.overlay = new MapOverlay(this.shield);
    this.card = new MapCard(this.plotBox);
    this.legend = el("div", { class: "lx-map-legend", role: "group", "aria-label": "classes (click to hide)" });
    this.root = el("div", { class: "lx-map" }, [
      el("div", { class: "lx-map-tools" }, [...this.modeButtons, this.search, this.said, reset, this.exportButton]),
      this.plotBox, this.legend,
    ]);
    root.append(this.root);
    this.shield.addEventListener("pointermove", (event) => this.onMove(event));
    this.shield.addEventListener("pointerleave", () => this.leave());
    this.shield.addEventListener("pointerdown", (event) => this.onDown(event));
    this.shield.addEventListener("pointerup", (event) => this.onUp(event));
    this.shield.addEventListener("wheel", (event) => {
      event.preventDefault(); // the map zooms; the page does not scroll
      this.canvas.dispatchEvent(new WheelEvent("wheel", event));
    }, { passive: false });
    this.resizer = new ResizeObserver(() => this.resize());
    this.resizer.observe(this.plotBox);
  }

  async update(data, setStateValue) {
    this.data = data;
    this.setStateValue = setStateValue;
    // the training split has no thumbnail sheet: its card asks for one image at a time
    const wanted = [["test", data.points_id, data.thumbnails_id], ["training", data.train_points_id, null]]
      .filter(([, id]) => id);
    const key = JSON.stringify(wanted);
    if (key !== this.layerKey) {
      this.layerKey = key;
      let bundles, library;
      try {
        bundles = await Promise.all(wanted.map(([, id]) => hub().getBundle(id)));
        library = await loadScatter(data.scatter_url);
      } catch (error) {
        if (this.layerKey === key) this.layerKey = null; // the next run tries again
        this.said.textContent = `The map's points did not load (${error && error.message ? error.message : error}).`;
        return;
      }
      // the first draw holds the thread (shaders, 10,000+ points in software WebGL: 0.3-0.6 s
      // here): the decoded image drawn before it is shown first
      if (!this.plot) await afterNextPaint();
      const { createScatterplot, scaleLinear } = library;
      if (this.layerKey !== key) return; // another update came meanwhile
      this.library = { createScatterplot, scaleLinear };
      this.setLayers(wanted.map(([split, id, sheetId], i) => ({ split, id, sheetId, bundle: bundles[i] })));
    }
    this.path = data.path || null;
    this.showZ(hub().controls?.z || data.latent);
    const asked = data.training_image;
    if (asked && !this.trainingImages.has(asked.row)) {
      this.trainingImages.set(asked.row, asked.image);
      const point = this.point;
      if (point !== null && layerOf(this.layers, point)[0]?.split === "training") this.pointTo(point, true);
    }
  }

  // LAYERS: [{split, id, sheetId, bundle}], the test split first; a promise of their drawing
  setLayers(layers) {
    this.layers = layers;
    this.shown = layers.length === 1 ? layers[0].bundle : mergedBundle(layers.map((l) => l.bundle));
    this.index = new MapIndex(this.shown.embedding, this.shown.n);
    return this.drawPoints();
  }

  drawPoints() {
    const styled = this.restyle();
    // the library's coordinates and spatial index come made from Python (explorer/map_index.py)
    const n = this.shown.n, x = new Float32Array(n), y = new Float32Array(n), p = this.shown.positions;
    for (let r = 0; r < n; r++) {
      x[r] = p[2 * r];
      y[r] = p[2 * r + 1];
    }
    const started = performance.now();
    this.selection = [];
    this.drawn = styled
      .then(() => this.plot.draw({ x, y, valueA: Float32Array.from(this.shown.labels) },
        { zDataType: "categorical", spatialIndex: this.shown.spatialIndex }))
      .then(() => {
        const stats = hub().test.stats;
        stats.mapDrawMs = performance.now() - started;
        stats.mapDraws = (stats.mapDraws || 0) + 1;
        this.drawnAt = performance.now();
        this.applyLegend();
        this.drawOverlay();
      });
    this.buildLegend();
    return this.drawn;
  }

  // The view and the points' style for the points about to be drawn: another model's frame, the
  // size for their number, the colours. A change redraws the points still shown, on the next
  // frame, which is awaited: otherwise the new points are drawn twice (1M: ~0.4 s each here).
  restyle() {
    const test = this.layers[0];
    if (this.frameOf !== test.id) { // another model: its own frame, the view back to it
      this.frame = test.bundle.frame;
      this.frameOf = test.id;
      this.hidden.clear(); // its classes and training images are others
      this.trainingImages.clear();
      if (this.plot) this.setScales();
    }
    if (!this.plot) this.createPlot(this.library.createScatterplot);
    const n = this.shown.n, colours = this.data.colours;
    const style = { pointSize: n > 200000 ? 1.5 : n > 30000 ? 2.5 : 4, pointColor: colours, pointColorActive: colours };
    const key = JSON.stringify([style, this.frameOf]);
    if (key === this.styleKey) return Promise.resolve();
    this.styleKey = key;
    this.plot.set(style);
    return new Promise((done) => requestAnimationFrame(() => done()));
  }

  // scales from the frame to the plot's pixels, which the library keeps in step with its camera
  frameScales() {
    const { cx, cy, half } = this.frame, { scaleLinear } = this.library;
    this.xScale = scaleLinear().domain([cx - half, cx + half]);
    this.yScale = scaleLinear().domain([cy - half, cy + half]);
  }

  setScales() {
    this.frameScales();
    this.plot.set({ xScale: this.xScale, yScale: this.yScale });
    this.plot.reset();
  }

  createPlot(createScatterplot) {
    this.frameScales();
    const { width } = this.plotBox.getBoundingClientRect();
    this.plot = createScatterplot({
      canvas: this.canvas, width: Math.max(width, 100), height: MAP_HEIGHT, xScale: this.xScale, yScale: this.yScale,
      backgroundColor: "#ffffff", colorBy: "valueA", opacity: 0.75, opacityInactiveScale: DIMMED,
      pointOutlineWidth: 1, pointSizeSelected: 1, lassoColor: "#31333f", deselectOnEscape: true,
    });
    this.plot.subscribe("view", () => this.drawOverlay());
    this.plot.subscribe("select", ({ points }) => this.setSelection(Array.from(points)));
    this.plot.subscribe("deselect", () => this.setSelection([]));
    this.setMode("pan");
  }

  resize() {
    if (!this.plot) return;
    const { width } = this.plotBox.getBoundingClientRect();
    if (width > 0) this.plot.set({ width, height: MAP_HEIGHT });
  }

  setMode(mode) {
    const [, mouseMode, lassoType] = MODES[mode];
    this.mode = mode;
    this.plot?.set(lassoType ? { mouseMode, lassoType } : { mouseMode });
    for (const button of this.modeButtons) button.setAttribute("aria-pressed", String(button.dataset.mode === mode));
  }

  // ------------------------------------------------------------------ the legend

  buildLegend() {
    const present = new Set(this.shown.labels);
    const classes = this.data.classes;
    this.legend.replaceChildren(...[...present].sort((a, b) => a - b).map((k) => {
      const item = el("button", { type: "button", class: "lx-legend-item", "data-class": k }, [
        el("span", { class: "lx-legend-swatch", style: `background:${this.data.colours[k % this.data.colours.length]}` }),
        classes[k] ?? String(k)]);
      item.addEventListener("click", () => {
        if (this.hidden.has(k)) this.hidden.delete(k); else this.hidden.add(k);
        this.applyLegend();
      });
      return item;
    }));
  }

  applyLegend() {
    for (const item of this.legend.children) {
      item.setAttribute("aria-pressed", String(!this.hidden.has(Number(item.dataset.class))));
    }
    if (!this.plot) return;
    if (!this.hidden.size) { // a fresh draw is unfiltered: another redraw costs 1M points ~0.4 s
      if (this.plot.get("isPointsFiltered")) this.plot.unfilter({ preventEvent: true });
      return;
    }
    const labels = this.shown.labels, visible = [];
    for (let r = 0; r < this.shown.n; r++) if (!this.hidden.has(labels[r])) visible.push(r);
    this.plot.filter(visible, { preventEvent: true });
  }

  // ------------------------------------------------------------------ the star, its neighbours, the path

  // the star at z (while hovering: under the pointer), placed among the test split's means
  showZ(z) {
    if (!z || !this.layers.length) return;
    if (this.hoverXY) { // hovering: the star is under the pointer, among no neighbours
      this.star = { xy: this.hoverXY, neighbours: [] };
    } else {
      const started = performance.now();
      const test = this.layers[0].bundle, placed = placeAmongNeighbours(test, z);
      const neighbours = placed.rows.map((row) => [test.embedding[2 * row], test.embedding[2 * row + 1]]);
      this.star = { xy: placed.xy, neighbours };
      hub().test.stats.lastPlaceMs = performance.now() - started;
    }
    this.drawOverlay();
  }

  toPixels([x, y]) {
    return [this.xScale(x), this.yScale(y)];
  }

  drawOverlay() {
    if (!this.plot || !this.frame) return;
    const hovered = this.point === null ? null : [this.shown.embedding[2 * this.point], this.shown.embedding[2 * this.point + 1]];
    this.overlay.draw((xy) => this.toPixels(xy), this.star, this.path, hovered);
  }

  // ------------------------------------------------------------------ hover, click, selection

  dataAt(event) {
    const rect = this.canvas.getBoundingClientRect();
    return [this.xScale.invert(event.clientX - rect.left), this.yScale.invert(event.clientY - rect.top)];
  }

  onMove(event) {
    if (event.buttons !== 0 || !this.plot || !this.index) return; // a pan or a lasso: the library's
    const started = performance.now();
    const [x, y] = this.dataAt(event);
    this.pointTo(this.pointNear(x, y));
    const controls = hub().controls;
    if (controls && controls.z) {
      const found = latentAtMapPoint(this.shown, this.index, x, y);
      if (!this.hovering) {
        this.hovering = true;
        this.committed = Float32Array.from(controls.z);
      }
      this.hoverXY = [x, y];
      controls.hoverTo(found.z, found.gap > FAR_GAP ? found.gap : null);
      const stats = hub().test.stats;
      stats.hoverMoves = (stats.hoverMoves || 0) + 1;
      stats.lastHoverMs = performance.now() - started;
      stats.hoverMs = (stats.hoverMs || 0) + stats.lastHoverMs;
      stats.lastHoverGap = found.gap;
    }
    this.drawOverlay();
  }

  // the shown point nearest the map position (x, y), if it is within POINT_REACH_PX and not hidden
  pointNear(x, y) {
    const [[d2, row]] = this.index.nearest(x, y, 1);
    const pixels = Math.sqrt(d2) * Math.abs(this.xScale(1) - this.xScale(0));
    return pixels <= POINT_REACH_PX && !this.hidden.has(this.shown.labels[row]) ? row : null;
  }

  leave() {
    this.pointTo(null);
    if (this.hovering) {
      this.hovering = false;
      this.hoverXY = null;
      hub().controls?.hoverTo(this.committed, null);
    }
    this.drawOverlay();
  }

  // Python moved the latent (a point clicked, a button) while the pointer is on the map
  recommit(z) {
    if (this.hovering) this.committed = Float32Array.from(z);
  }

  // a press: the library's, to pan (or draw a box or a lasso), but not its clicks, which we take
  onDown(event) {
    this.down = [event.clientX, event.clientY];
    if (event.button !== 0) return;
    const init = { clientX: event.clientX, clientY: event.clientY, screenX: event.screenX, screenY: event.screenY,
      button: 0, buttons: 1, bubbles: true, cancelable: true, shiftKey: event.shiftKey, altKey: event.altKey,
      ctrlKey: event.ctrlKey, metaKey: event.metaKey };
    this.canvas.dispatchEvent(new MouseEvent("mousedown", init));
  }

  onUp(event) {
    const down = this.down;
    this.down = null;
    if (!down || Math.hypot(event.clientX - down[0], event.clientY - down[1]) > CLICK_SLOP_PX) return;
    if (this.point !== null) { // a click on a point: load its latent
      this.clicks += 1;
      hub().test.stats.clickedRow = this.point;
      this.setStateValue("clicked", { row: this.point, click: this.clicks });
      return;
    }
    const controls = hub().controls; // elsewhere the hovered z is kept
    if (!this.hovering || !controls) return;
    this.committed = Float32Array.from(controls.z);
    controls.commit();
  }

  pointAt(mapRow) {
    const [layer, row] = layerOf(this.layers, mapRow);
    const name = layer.bundle.names ? ` · ${layer.bundle.names[row]}` : "";
    const label = layer.bundle.labels[row];
    const caption = `${layer.split} image #${layer.bundle.index[row]} · ${this.data.classes[label] ?? label}${name}`;
    const imageUrl = layer.split === "training" ? this.trainingImages.get(row) : undefined;
    return { mapRow, row, split: layer.split, bundle: layer.bundle, caption, sheetId: layer.sheetId, imageUrl };
  }

  // MAP_ROW is under the pointer (or null: none is): its card (AGAIN: drawn anew, its image came)
  pointTo(mapRow, again = false) {
    if (mapRow === this.point && !again) return;
    this.point = mapRow;
    clearTimeout(this.cardTimer);
    if (mapRow === null) {
      this.card.hide();
      return;
    }
    const at = this.toPixels([this.shown.embedding[2 * mapRow], this.shown.embedding[2 * mapRow + 1]]);
    const { width } = this.plotBox.getBoundingClientRect();
    const point = this.pointAt(mapRow);
    this.card.show(point, at, this.data.shape, hub().controls, [width, MAP_HEIGHT]);
    if (point.split === "training" && point.imageUrl === undefined) { // not asked for yet
      this.cardTimer = setTimeout(() => {
        if (this.point === mapRow) this.setStateValue("card", { row: point.row, ask: ++this.cardAsks });
      }, CARD_REST_MS);
    }
  }

  setSelection(rows) {
    if (!rows.length && !this.selection.length) return;
    this.selection = rows;
    this.exportButton.toggleAttribute("disabled", rows.length === 0);
    this.exportButton.textContent = rows.length ? `Export ${rows.length.toLocaleString()} as CSV` : "Export CSV";
    this.setStateValue("selection", rows);
  }

  find(query) {
    if (!this.layers.length) return;
    const { rows, said } = findPoints(this.layers, this.data.classes, query);
    this.said.textContent = said;
    if (!rows.length) return;
    this.plot.select(rows, { preventEvent: true });
    this.setSelection(rows);
    if (rows.length === 1) {
      const [x, y] = [this.shown.embedding[2 * rows[0]], this.shown.embedding[2 * rows[0] + 1]];
      const { cx, cy, half } = this.frame;
      this.plot.zoomToLocation([(x - cx) / half, (y - cy) / half], 0.15, { transition: true });
    } else {
      this.plot.zoomToPoints(rows, { padding: 0.2, transition: true });
    }
  }

  exportSelection() {
    if (!this.selection.length) return;
    const csv = selectionCsv(this.layers, this.data.classes, this.selection);
    const link = el("a", { href: URL.createObjectURL(new Blob([csv], { type: "text/csv" })),
      download: `${this.data.model_name || "map"}-selection.csv` });
    this.root.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  }

  destroy() {
    this.resizer.disconnect();
    this.plot?.destroy();
    if (hub().map === this) hub().map = null;
  }
}

// the splits' points as one bundle: the test split's rows first; the last split's spatial index
// covers them all (explorer.live.points_bundle's drawn_after)
function mergedBundle(bundles) {
  const n = bundles.reduce((total, b) => total + b.n, 0), d = bundles[0].d;
  const merged = { n, d, means: new Float32Array(n * d), embedding: new Float32Array(n * 2), labels: new Int32Array(n),
    positions: new Float32Array(n * 2), spatialIndex: bundles[bundles.length - 1].spatialIndex };
  let offset = 0;
  for (const b of bundles) {
    merged.means.set(b.means, offset * d);
    merged.embedding.set(b.embedding, offset * 2);
    merged.positions.set(b.positions, offset * 2);
    merged.labels.set(b.labels, offset);
    offset += b.n;
  }
  return merged;
}
