// The map as an instrument: with the pointer over the plotly map (key "atlas_map") and no
// button pressed, the controls show the latent under the pointer (latentAtMapPoint), decoded
// every display frame; leaving the map returns to the committed z and a click commits. A point
// under the pointer shows its test image beside its reconstruction in a card.

const FAR_GAP = 3; // farther than 3 typical spacings from every test point: a sparse region
const CLICK_SLOP_PX = 4; // a press that moves less than this is a click, not a pan
const CARD_SCALE = 2;

class MapExplorer {
  constructor(live) {
    this.live = live;
    this.plot = null;
    this.index = null; // MapIndex of the live bundle's map positions
    this.indexOf = null; // the bundle it was built for
    this.hovering = false;
    this.committed = null; // Float32Array: the z to return to on leaving
    this.point = null; // the atlas row plotly says is under the pointer, or null
    this.down = null; // where a press began, to tell a click from a pan
    this.sheet = null; // a promise of {bitmap, columns, count}: the thumbnails bundle's sheet
    this.sheetId = null;
    this.card = null;
    this.cardRow = null;
    this.timer = setInterval(() => this.attach(), 500); // a remounted chart gets its listeners back
    // on the window, not the chart: a press makes plotly cover the page with its drag layer
    // until the release, and the chart itself then sees the pointer leave and no release
    this.listeners = {
      pointermove: (event) => this.onMove(event),
      pointerdown: (event) => { this.down = this.plot && this.mapPoint(event) ? [event.clientX, event.clientY] : null; },
      click: (event) => this.onClick(event),
    };
    for (const [name, listener] of Object.entries(this.listeners)) window.addEventListener(name, listener, true);
    this.onPageLeave = () => this.leave();
    document.documentElement.addEventListener("pointerleave", this.onPageLeave);
  }

  attach() {
    const plot = document.querySelector(".st-key-atlas_map .js-plotly-plot");
    if (!plot || plot === this.plot) return;
    this.detach();
    this.plot = plot;
    if (typeof plot.on === "function") {
      plot.on("plotly_hover", (event) => this.onPointHover(event));
      plot.on("plotly_unhover", () => this.onPointLeave());
    }
  }

  detach() {
    if (!this.plot) return;
    this.leave();
    this.card?.remove();
    this.card = null;
    this.plot = null;
  }

  // the map position under a pointer event, or null outside the plotting area
  mapPoint(event) {
    const layout = this.plot._fullLayout;
    if (!layout || !layout.xaxis) return null;
    const xa = layout.xaxis, ya = layout.yaxis;
    const rect = this.plot.getBoundingClientRect();
    const px = event.clientX - rect.left - xa._offset, py = event.clientY - rect.top - ya._offset;
    if (px < 0 || py < 0 || px > xa._length || py > ya._length) return null;
    return [xa.p2l(px), ya.p2l(py)];
  }

  ready() {
    const bundle = this.live.bundle;
    if (!bundle || !bundle.means || !this.live.z) return false;
    if (this.indexOf !== bundle) {
      this.index = new MapIndex(bundle.embedding, bundle.n);
      this.indexOf = bundle;
    }
    return true;
  }

  onMove(event) {
    if (!this.plot || event.buttons !== 0 || !this.ready()) return; // a pan or a box selection: not a hover
    // over the chart itself: not a menu or a tooltip drawn above it
    const xy = this.plot.isConnected && this.plot.contains(event.target) ? this.mapPoint(event) : null;
    if (!xy) {
      this.leave();
      return;
    }
    const started = performance.now();
    const found = latentAtMapPoint(this.live.bundle, this.index, xy[0], xy[1]);
    if (!this.hovering) {
      this.hovering = true;
      this.committed = Float32Array.from(this.live.z);
    }
    this.live.hoverTo(found.z, xy, found.gap > FAR_GAP ? found.gap : null);
    const stats = hub().test.stats;
    stats.hoverMoves = (stats.hoverMoves || 0) + 1;
    stats.lastHoverMs = performance.now() - started;
    stats.hoverMs = (stats.hoverMs || 0) + stats.lastHoverMs;
    stats.lastHoverGap = found.gap;
  }

  leave() {
    if (!this.hovering) return;
    this.hovering = false;
    this.live.hoverTo(this.committed, null, null);
    this.hideCard();
  }

  // Python moved the latent (a point clicked, a button) while the pointer is on the map
  recommit(z) {
    if (this.hovering) this.committed = Float32Array.from(z);
  }

  onClick(event) {
    const down = this.down;
    this.down = null;
    if (!down || !this.hovering || Math.hypot(event.clientX - down[0], event.clientY - down[1]) > CLICK_SLOP_PX) return;
    // on a point plotly's selection loads it (Python); elsewhere the hovered z is the new one
    if (this.point !== null) return;
    this.committed = Float32Array.from(this.live.z);
    this.live.commit();
  }

  // ------------------------------------------------------------------ the thumbnail card

  onPointHover(event) {
    const point = event && event.points && event.points[0];
    // customdata is (test-set position, atlas row); plotly hands it over as a typed array
    const row = point && point.customdata && point.customdata.length === 2 ? Number(point.customdata[1]) : null;
    if (!Number.isInteger(row)) return;
    this.point = row;
    this.showCard(row, event.event);
  }

  onPointLeave() {
    this.point = null;
    this.hideCard();
  }

  // the thumbnails bundle's sheet as a bitmap, decoded once per bundle (a promise: hovers
  // that arrive while it decodes wait for the same one)
  loadSheet() {
    const id = this.live.data && this.live.data.thumbnails_id;
    if (!id) return Promise.resolve(null);
    if (this.sheetId !== id) {
      this.sheetId = id;
      this.sheet = hub().getBundle(id).then(async (bundle) => {
        const bitmap = await createImageBitmap(new Blob([bundle.thumbnails.png], { type: "image/png" }));
        return { bitmap, columns: bundle.thumbnails.columns, count: bundle.thumbnails.count };
      });
    }
    return this.sheet;
  }

  async showCard(row, mouse) {
    if (!this.plot || !this.live.decoder) return;
    const [, height, width] = this.live.shape;
    const side = Math.max(56, width * CARD_SCALE);
    if (!this.card || !this.card.isConnected) {
      this.card = el("div", { class: "lx-map-card", role: "img" });
      Object.assign(this.card.style, { position: "absolute", zIndex: "11", pointerEvents: "none", background: "white",
        border: "1px solid #bbb", borderRadius: "4px", padding: "4px", font: "12px sans-serif", color: "#31333f",
        boxShadow: "0 1px 4px rgba(0,0,0,0.25)", display: "flex", gap: "4px", alignItems: "flex-end" });
      this.plot.querySelector(".svg-container").append(this.card);
    }
    this.cardRow = row;
    const original = el("canvas", { class: "lx-card-image", width: side, height: side * (height / width) });
    const recon = el("canvas", { class: "lx-card-reconstruction", width: side, height: side * (height / width) });
    const figure = (canvas, caption) => el("figure", { style: "margin:0;text-align:center" },
      [canvas, el("figcaption", {}, [caption])]);
    this.card.replaceChildren(figure(original, "test image"), figure(recon, "reconstruction"));
    this.card.dataset.row = row;
    this.card.setAttribute("aria-label", `test image ${row} beside its reconstruction`);
    const rect = this.plot.getBoundingClientRect();
    const x = (mouse ? mouse.clientX : rect.left) - rect.left, y = (mouse ? mouse.clientY : rect.top) - rect.top;
    const cardWidth = 2 * side + 16, cardHeight = side + 28;
    // to the pointer's left, clear of plotly's own label on its right
    const left = x - cardWidth - 16 < 0 ? x + 120 : x - cardWidth - 16;
    const top = Math.min(Math.max(y - cardHeight - 12, 0), rect.height - cardHeight);
    this.card.style.transform = `translate(${left}px, ${top}px)`;
    this.card.style.display = "flex";
    const bundle = this.live.bundle, d = bundle.d;
    const pixels = await this.live.decoder.run(bundle.means.subarray(row * d, row * d + d), 1, this.live.label);
    if (this.cardRow !== row) return;
    this.live.drawTo(pixels, recon);
    const sheet = await this.loadSheet();
    if (!sheet || this.cardRow !== row || row >= sheet.count) return;
    const context = original.getContext("2d");
    context.imageSmoothingEnabled = false;
    const sx = (row % sheet.columns) * width, sy = Math.floor(row / sheet.columns) * height;
    context.drawImage(sheet.bitmap, sx, sy, width, height, 0, 0, original.width, original.height);
    const stats = hub().test.stats;
    stats.cards = (stats.cards || 0) + 1;
  }

  hideCard() {
    this.cardRow = null;
    if (this.card) this.card.style.display = "none";
  }

  destroy() {
    clearInterval(this.timer);
    this.detach();
    for (const [name, listener] of Object.entries(this.listeners)) window.removeEventListener(name, listener, true);
    document.documentElement.removeEventListener("pointerleave", this.onPageLeave);
  }
}
