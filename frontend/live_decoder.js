// The live decoder: range controls z1…zD and a 2-D pad that run the model's decoder in the
// browser (onnxruntime-web, WebAssembly) on every input event, so the image follows the drag.
// The latent goes back to Python on release; Python moves the controls by bumping `revision`.
//
// Two components share this module's state through window.__latentExplorer (they live in
// shadow roots of the same page, not iframes):
//   decoder_model: data = the checkpoint's bundle (explorer/live.py browser_bundle): the decoder
//                  as ONNX and the atlas (encoded means, map positions); sent once per model;
//   live_latent:   data = small JSON (bundle id, shape, latent, revision, ranges, PCA plane).
// The current z is also a star drawn over the page's plotly map (placed among its nearest
// encoded neighbours, as explorer/atlas.py place_on_map does), so it follows the drag.

const HOOK = "__latentExplorer";
const IMAGE_SIDE = 320; // CSS pixels of the decoded image; drawn nearest-neighbour
const PAD_SIDE = 220;
const PREVIEW_STEPS = 9; // the pad's background: a 9 × 9 grid of decoded points of the plane
const COMMIT_DELAY_MS = 150;

function hub() {
  if (!window[HOOK]) {
    const waiters = new Map();
    window[HOOK] = {
      bundles: new Map(), // bundle id -> {onnx: Uint8Array, means?: Float32Array, embedding?, n, d}
      sessions: new Map(), // bundle id -> Promise<decoder>
      ort: null, // Promise<ort module>
      active: null, // the instance drawn last: the test hook decodes with its model
      stats: { decodes: 0, draws: 0, lastDecodeMs: 0, lastPlaceMs: 0 },
      // milliseconds since navigation start: when the runtime, the session and the first image came
      timing: { mounted: performance.now(), placeholder: null, runtime: null, session: null, firstDraw: null },
      putBundle(id, bundle) {
        this.bundles.set(id, bundle);
        for (const resolve of waiters.get(id) || []) resolve(bundle);
        waiters.delete(id);
      },
      getBundle(id) {
        if (this.bundles.has(id)) return Promise.resolve(this.bundles.get(id));
        return new Promise((resolve) => {
          if (!waiters.has(id)) waiters.set(id, []);
          waiters.get(id).push(resolve);
        });
      },
      // Test hook: the map position of z with the active model's atlas.
      place(z) {
        return placeOnMap(this.active.bundle, z);
      },
      // Test and benchmark hook: decode a list of latents with the active model.
      async decode(latents, label = 0) {
        if (!this.active || !this.active.decoder) throw new Error("no decoder loaded");
        const out = await this.active.decoder.run(latents.flat(), latents.length, label);
        const size = out.length / latents.length;
        return latents.map((_, i) => Array.from(out.subarray(i * size, (i + 1) * size)));
      },
    };
  }
  return window[HOOK];
}

function loadOrt(assetUrl) {
  const h = hub();
  if (!h.ort) {
    h.ort = (async () => {
      if (typeof WebAssembly !== "object") {
        throw new Error("this browser has WebAssembly turned off");
      }
      // Fetch the 14 MB runtime ourselves: Streamlit gzips /app/static/ responses on the fly
      // (about 1.4 s of server CPU for this file) but passes a Range request through as is.
      const [ort, , wasm] = await Promise.all([
        import(assetUrl + "ort.wasm.min.mjs"),
        import(assetUrl + "ort-wasm-simd-threaded.mjs"), // ort imports it next: start it now
        fetch(assetUrl + "ort-wasm-simd-threaded.wasm", { headers: { Range: "bytes=0-" } })
          .then((response) => {
            if (!response.ok) throw new Error(`the decoder runtime did not load (HTTP ${response.status})`);
            return response.arrayBuffer();
          }),
      ]);
      ort.env.wasm.wasmPaths = assetUrl;
      ort.env.wasm.wasmBinary = wasm;
      // More threads need a cross-origin-isolated page, which Streamlit does not serve.
      ort.env.wasm.numThreads = 1;
      ort.env.wasm.proxy = false;
      h.timing.runtime = performance.now();
      return ort;
    })();
  }
  return h.ort;
}

// One onnxruntime session per model, with its runs in a queue: a session runs one call at a time.
function getDecoder(modelId, latentDim, numClasses, assetUrl) {
  const h = hub();
  if (!h.sessions.has(modelId)) {
    h.sessions.set(modelId, (async () => {
      const ort = await loadOrt(assetUrl);
      const bundle = await h.getBundle(modelId);
      const session = await ort.InferenceSession.create(bundle.onnx, { executionProviders: ["wasm"] });
      if (h.timing.session === null) h.timing.session = performance.now();
      let queue = Promise.resolve();
      return {
        latentDim,
        // values: count × D latents, flat; label: the class, for a conditional model
        run(values, count, label = 0) {
          const job = queue.then(async () => {
            const started = performance.now();
            const feeds = { z: new ort.Tensor("float32", Float32Array.from(values), [count, latentDim]) };
            if (numClasses > 0) {
              const y = new Float32Array(count * numClasses);
              for (let n = 0; n < count; n++) y[n * numClasses + label] = 1;
              feeds.y = new ort.Tensor("float32", y, [count, numClasses]);
            }
            const result = await session.run(feeds);
            h.stats.decodes += count;
            h.stats.lastDecodeMs = performance.now() - started;
            return result.image.data; // (count, C, H, W) float32 in [0, 1]
          });
          queue = job.catch(() => undefined);
          return job;
        },
      };
    })());
  }
  return h.sessions.get(modelId);
}

// "LEXB", uint32 header length, JSON header {id, sections}, then the sections (4-byte aligned).
function parseBundle(bytes) {
  if (bytes.length < 8 || new TextDecoder().decode(bytes.subarray(0, 4)) !== "LEXB") return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getUint32(4, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
  const body = 8 + headerLength;
  const section = (name) => {
    const s = header.sections[name];
    return s ? bytes.slice(body + s.offset, body + s.offset + s.length) : null; // a copy: aligned
  };
  const bundle = { id: header.id, onnx: section("onnx") };
  if (header.sections.means && header.sections.embedding) {
    [bundle.n, bundle.d] = header.sections.means.shape;
    bundle.means = new Float32Array(section("means").buffer);
    bundle.embedding = new Float32Array(section("embedding").buffer);
  }
  return bundle;
}

// Map position of z: the inverse-distance-weighted (1/d²) mean of the map positions of its
// k nearest encoded means; exactly the point's position on a point (explorer/atlas.py).
function placeOnMap(bundle, z, k = 8) {
  const { n, d, means, embedding } = bundle;
  const nearest = []; // [d², row], ascending, at most k
  for (let row = 0; row < n; row++) {
    let d2 = 0;
    for (let j = 0; j < d; j++) {
      const diff = means[row * d + j] - z[j];
      d2 += diff * diff;
    }
    if (nearest.length < k || d2 < nearest[nearest.length - 1][0]) {
      let at = nearest.length;
      while (at > 0 && nearest[at - 1][0] > d2) at--;
      nearest.splice(at, 0, [d2, row]);
      if (nearest.length > k) nearest.pop();
    }
  }
  if (Math.sqrt(nearest[0][0]) < 1e-6) {
    const row = nearest[0][1];
    return [embedding[2 * row], embedding[2 * row + 1]];
  }
  let x = 0, y = 0, total = 0;
  for (const [d2, row] of nearest) {
    const w = 1 / d2;
    x += w * embedding[2 * row];
    y += w * embedding[2 * row + 1];
    total += w;
  }
  return [x / total, y / total];
}

// The star over the plotly map (key "atlas_map"), positioned with plotly's own axis transforms
// and kept there through zoom, pan and redraws of the chart.
const STAR_SVG = '<svg width="30" height="30" viewBox="-15 -15 30 30" aria-hidden="true">'
  + '<polygon points="0,-13 3.8,-4.2 13,-4 5.7,2.4 8.2,11.5 0,6.3 -8.2,11.5 -5.7,2.4 -13,-4 -3.8,-4.2" '
  + 'fill="#111" stroke="white" stroke-width="2"/></svg>';

class MapMarker {
  constructor() {
    this.xy = null;
    this.star = null;
    this.plot = null;
    this.timer = setInterval(() => this.render(), 500); // a remounted chart gets the star back
  }

  set(xy) {
    this.xy = xy;
    this.render();
  }

  render() {
    const plot = document.querySelector(".st-key-atlas_map .js-plotly-plot");
    if (!plot || !plot._fullLayout || !plot._fullLayout.xaxis || !this.xy) {
      if (this.star) this.star.style.display = "none";
      return;
    }
    if (plot !== this.plot || !this.star || !this.star.isConnected) {
      this.star?.remove();
      this.star = document.createElement("div");
      this.star.className = "lx-map-star";
      this.star.title = "current z";
      this.star.innerHTML = STAR_SVG;
      Object.assign(this.star.style, { position: "absolute", left: "0", top: "0", pointerEvents: "none", willChange: "transform",
        zIndex: "10", lineHeight: "0" });
      plot.querySelector(".svg-container").append(this.star);
      if (plot !== this.plot && typeof plot.on === "function") {
        plot.on("plotly_relayout", () => this.render());
        plot.on("plotly_afterplot", () => this.render());
      }
      this.plot = plot;
    }
    const xa = plot._fullLayout.xaxis, ya = plot._fullLayout.yaxis;
    const x = xa._offset + xa.l2p(this.xy[0]), y = ya._offset + ya.l2p(this.xy[1]);
    const inside = x >= xa._offset && x <= xa._offset + xa._length && y >= ya._offset && y <= ya._offset + ya._length;
    this.star.style.display = inside ? "block" : "none";
    this.star.style.transform = `translate(${x - 15}px, ${y - 15}px)`;
    this.star.dataset.x = this.xy[0];
    this.star.dataset.y = this.xy[1];
  }

  destroy() {
    clearInterval(this.timer);
    this.star?.remove();
  }
}

// (C, H, W) float32 in [0, 1] at `offset` -> RGBA pixels of an ImageData.
function toImageData(values, offset, shape) {
  const [channels, height, width] = shape;
  const plane = height * width;
  const image = new ImageData(width, height);
  const rgba = image.data;
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) {
      const v = values[offset + (channels === 1 ? 0 : c) * plane + p];
      rgba[4 * p + c] = Math.round(Math.min(Math.max(v, 0), 1) * 255);
    }
    rgba[4 * p + 3] = 255;
  }
  return image;
}

function el(tag, attributes = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

class LiveLatent {
  constructor(root) {
    this.root = root;
    this.decoder = null;
    this.modelId = null;
    this.revision = null;
    this.z = null; // Float32Array (D,)
    this.pending = false; // a decode is wanted for the current z
    this.busy = false;
    this.dragging = false;
    this.plane = null;
    this.previewKey = null;
    this.failed = false;
    this.bundle = null;
    this.marker = new MapMarker();
    this.box = el("div", { class: "lx" });
    // the size container of the CSS's @container rule: a narrow column shrinks the image
    root.append(el("div", { class: "lx-host" }, [this.box]));
  }

  build(data) {
    const dim = data.latent.length;
    this.shape = data.shape;
    this.box.replaceChildren();
    this.image = el("canvas", { class: "lx-image", width: IMAGE_SIDE, height: IMAGE_SIDE,
      "aria-label": "decoded image", role: "img" });
    this.small = el("canvas", { width: data.shape[2], height: data.shape[1] });
    this.status = el("div", { class: "lx-status", role: "status" }, ["Loading the decoder…"]);
    const left = el("div", { class: "lx-left" }, [this.image, this.status]);

    this.inputs = [];
    this.outputs = [];
    const rows = [];
    for (let i = 0; i < dim; i++) {
      const input = el("input", { type: "range", step: "0.01", "aria-label": `z${i + 1}` });
      const output = el("output", { class: "lx-value" });
      input.addEventListener("input", () => this.onSlide(i));
      input.addEventListener("change", () => this.commit());
      this.inputs.push(input);
      this.outputs.push(output);
      rows.push(el("label", { class: "lx-row" }, [el("span", { class: "lx-name" }, [`z${i + 1}`]), input, output]));
    }
    this.planeSelect = el("select", { "aria-label": "pad plane", class: "lx-select" });
    this.planeSelect.addEventListener("change", () => this.choosePlane());
    this.pad = el("canvas", { class: "lx-pad", width: PAD_SIDE, height: PAD_SIDE, tabindex: "0",
      "aria-label": "2-D pad: drag to move z across the chosen plane" });
    this.preview = el("canvas", { width: PAD_SIDE, height: PAD_SIDE });
    this.pad.addEventListener("pointerdown", (event) => this.onPadDown(event));
    this.pad.addEventListener("pointermove", (event) => this.onPadMove(event));
    this.pad.addEventListener("pointerup", (event) => this.onPadUp(event));
    this.pad.addEventListener("pointercancel", (event) => this.onPadUp(event));
    this.pad.addEventListener("keydown", (event) => this.onPadKey(event));
    this.pad.addEventListener("keyup", (event) => { if (event.key.startsWith("Arrow")) this.commit(); });
    const padBox = el("div", { class: "lx-padbox" }, [
      el("label", { class: "lx-caption" }, ["2-D pad ", this.planeSelect]), this.pad]);
    const right = el("div", { class: "lx-right" }, [el("div", { class: "lx-sliders" }, rows), padBox]);
    this.box.append(left, right);
    this.dim = dim;
  }

  update(data, setStateValue) {
    this.setStateValue = setStateValue;
    this.data = data;
    const shapeKey = JSON.stringify([data.shape, data.latent.length]);
    if (shapeKey !== this.shapeKey) {
      this.build(data);
      this.shapeKey = shapeKey;
      this.revision = null;
      this.previewKey = null;
    }
    this.low = data.low;
    this.high = data.high;
    const unused = data.unused || [];
    this.inputs.forEach((input, i) => {
      input.min = data.low[i];
      input.max = data.high[i];
      // a latent the model leaves unused: dimmed, and the hover says why its slider does nothing
      const off = unused.includes(i);
      input.parentElement.classList.toggle("lx-unused", off);
      input.parentElement.title = off ? "Unused by this model: the decoder ignores it" : "";
    });
    this.fillPlanes(data);
    if (data.revision !== this.revision || this.z === null) {
      this.revision = data.revision;
      this.z = Float32Array.from(data.latent);
      this.showValues();
    }
    if (data.label !== this.label) { // a conditional model's class, picked in Python
      this.label = data.label;
      this.previewKey = null;
      this.changed();
    }
    if (!this.decoder && data.image) this.drawPlaceholder(data.image);
    const assetUrl = new URL(data.asset_url, window.location.origin).href;
    if (data.bundle_id !== this.modelId) {
      this.modelId = data.bundle_id;
      this.decoder = null;
      this.bundle = null;
      const wanted = data.bundle_id;
      hub().getBundle(wanted).then((bundle) => {
        if (this.modelId !== wanted) return;
        this.bundle = bundle;
        this.placeMarker();
      });
      getDecoder(wanted, this.dim, data.num_classes, assetUrl).then((decoder) => {
        if (this.modelId !== wanted) return;
        this.decoder = decoder;
        this.status.textContent = "";
        this.status.hidden = true;
        hub().active = this;
        this.request();
        this.drawPreview();
      }).catch((error) => this.fail(error));
    } else {
      this.request();
      this.drawPreview();
    }
  }

  fail(error) {
    if (this.failed) return;
    this.failed = true;
    const reason = String(error && error.message ? error.message : error);
    this.status.hidden = false;
    this.status.textContent = `The in-browser decoder could not start (${reason}).`;
    this.box.classList.add("lx-failed");
    this.setStateValue("status", `unavailable: ${reason}`);
  }

  fillPlanes(data) {
    const planes = [];
    if (data.principal) planes.push(data.principal);
    const dim = data.latent.length;
    const pairs = [];
    for (let i = 0; i < dim; i++) {
      for (let j = i + 1; j < dim; j++) {
        if (dim <= 16 || j === i + 1) pairs.push([i, j]);
      }
    }
    for (const [i, j] of pairs) {
      const u = new Array(dim).fill(0), v = new Array(dim).fill(0);
      u[i] = 1; v[j] = 1;
      planes.push({ name: `z${i + 1} × z${j + 1}`, origin: new Array(dim).fill(0), u, v,
        a_range: [data.low[i], data.high[i]], b_range: [data.low[j], data.high[j]] });
    }
    const names = planes.map((p) => p.name).join("|");
    if (names !== this.planeNames) {
      const keep = this.plane ? this.plane.name : null;
      this.planeSelect.replaceChildren(...planes.map((p) => el("option", { value: p.name }, [p.name])));
      if (keep && planes.some((p) => p.name === keep)) this.planeSelect.value = keep;
      this.planeNames = names;
    }
    this.planes = planes;
    this.plane = planes.find((p) => p.name === this.planeSelect.value) || planes[0];
  }

  choosePlane() {
    this.plane = this.planes.find((p) => p.name === this.planeSelect.value);
    this.previewKey = null;
    this.drawPreview();
    this.drawPad();
  }

  // ------------------------------------------------------------------ latent changes

  showValues() {
    this.z.forEach((value, i) => {
      this.inputs[i].value = value;
      this.outputs[i].textContent = value.toFixed(2);
    });
    this.changed();
  }

  onSlide(i) {
    this.z[i] = parseFloat(this.inputs[i].value);
    this.outputs[i].textContent = this.z[i].toFixed(2);
    this.changed();
  }

  // z changed: redraw once per display frame, however many input events arrive in between.
  changed() {
    if (this.frameRequested) return;
    this.frameRequested = true;
    requestAnimationFrame(() => {
      this.frameRequested = false;
      this.drawPad();
      this.placeMarker();
      this.request();
    });
  }

  placeMarker() {
    if (!this.bundle || !this.bundle.means || !this.z) return;
    const started = performance.now();
    this.marker.set(placeOnMap(this.bundle, this.z));
    hub().stats.lastPlaceMs = performance.now() - started;
  }

  // Send z to Python once the user pauses (a key held down or tapped fast is one rerun).
  commit() {
    clearTimeout(this.commitTimer);
    this.commitTimer = setTimeout(() => {
      this.setStateValue("latent", Array.from(this.z, (v) => Math.round(v * 100) / 100));
    }, COMMIT_DELAY_MS);
    this.previewKey = null;
    this.drawPreview();
  }

  // Decode the newest z; input events that arrive during a decode collapse into one more.
  request() {
    this.pending = true;
    if (!this.busy && this.decoder) this.pump();
  }

  async pump() {
    this.busy = true;
    try {
      while (this.pending && this.decoder) {
        this.pending = false;
        const pixels = await this.decoder.run(this.z, 1, this.label);
        this.draw(pixels);
      }
    } catch (error) {
      this.fail(error);
    } finally {
      this.busy = false;
    }
  }

  draw(pixels) {
    this.small.getContext("2d").putImageData(toImageData(pixels, 0, this.shape), 0, 0);
    const context = this.image.getContext("2d");
    context.imageSmoothingEnabled = false;
    context.drawImage(this.small, 0, 0, IMAGE_SIDE, IMAGE_SIDE);
    hub().stats.draws += 1;
    if (hub().timing.firstDraw === null) hub().timing.firstDraw = performance.now();
    hub().active = this;
  }

  // The server's decode of the latent (a PNG data URL), shown until the browser's decoder runs.
  drawPlaceholder(url) {
    const picture = new Image();
    picture.onload = () => {
      if (this.decoder) return;
      const context = this.image.getContext("2d");
      context.imageSmoothingEnabled = false;
      context.drawImage(picture, 0, 0, IMAGE_SIDE, IMAGE_SIDE);
      if (hub().timing.placeholder === null) hub().timing.placeholder = performance.now();
    };
    picture.src = url;
  }

  // ------------------------------------------------------------------ the 2-D pad

  coordinates() {
    const { origin, u, v } = this.plane;
    let a = 0, b = 0;
    for (let k = 0; k < this.dim; k++) {
      a += (this.z[k] - origin[k]) * u[k];
      b += (this.z[k] - origin[k]) * v[k];
    }
    return [a, b];
  }

  toPad(a, b) {
    const [a0, a1] = this.plane.a_range, [b0, b1] = this.plane.b_range;
    return [((a - a0) / (a1 - a0)) * PAD_SIDE, (1 - (b - b0) / (b1 - b0)) * PAD_SIDE];
  }

  fromPad(x, y) {
    const [a0, a1] = this.plane.a_range, [b0, b1] = this.plane.b_range;
    const fx = Math.min(Math.max(x / PAD_SIDE, 0), 1), fy = Math.min(Math.max(y / PAD_SIDE, 0), 1);
    return [a0 + fx * (a1 - a0), b0 + (1 - fy) * (b1 - b0)];
  }

  // z + (a − a₀)·u + (b − b₀)·v, clamped to the controls' ranges (PadPlane in explorer/live.py).
  moveOnPlane(a, b) {
    const [a0, b0] = this.coordinates();
    const { u, v } = this.plane;
    for (let k = 0; k < this.dim; k++) {
      const moved = this.z[k] + (a - a0) * u[k] + (b - b0) * v[k];
      this.z[k] = Math.min(Math.max(moved, this.low[k]), this.high[k]);
    }
    this.showValues();
  }

  padPoint(event) {
    const rect = this.pad.getBoundingClientRect();
    return this.fromPad(((event.clientX - rect.left) / rect.width) * PAD_SIDE,
      ((event.clientY - rect.top) / rect.height) * PAD_SIDE);
  }

  onPadDown(event) {
    this.dragging = true;
    this.pad.setPointerCapture(event.pointerId);
    this.moveOnPlane(...this.padPoint(event));
  }

  onPadMove(event) {
    if (this.dragging) this.moveOnPlane(...this.padPoint(event));
  }

  onPadUp(event) {
    if (!this.dragging) return;
    this.dragging = false;
    if (this.pad.hasPointerCapture(event.pointerId)) this.pad.releasePointerCapture(event.pointerId);
    this.commit();
  }

  onPadKey(event) {
    const steps = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, 1], ArrowDown: [0, -1] }[event.key];
    if (!steps) return;
    event.preventDefault();
    const [a, b] = this.coordinates();
    const [a0, a1] = this.plane.a_range, [b0, b1] = this.plane.b_range;
    this.moveOnPlane(a + steps[0] * (a1 - a0) / 50, b + steps[1] * (b1 - b0) / 50);
  }

  drawPad() {
    if (!this.plane || !this.z) return;
    const context = this.pad.getContext("2d");
    context.clearRect(0, 0, PAD_SIDE, PAD_SIDE);
    context.globalAlpha = 0.55;
    context.drawImage(this.preview, 0, 0);
    context.globalAlpha = 1;
    context.strokeStyle = "rgba(128, 128, 128, 0.6)";
    context.strokeRect(0.5, 0.5, PAD_SIDE - 1, PAD_SIDE - 1);
    const [x, y] = this.toPad(...this.coordinates());
    context.beginPath();
    context.arc(Math.min(Math.max(x, 0), PAD_SIDE), Math.min(Math.max(y, 0), PAD_SIDE), 6, 0, 2 * Math.PI);
    context.fillStyle = "#ff4b4b";
    context.fill();
    context.lineWidth = 2;
    context.strokeStyle = "white";
    context.stroke();
  }

  // The plane's decoded grid behind the pad: where the pad leads, before you drag there.
  async drawPreview() {
    if (!this.decoder || !this.plane || !this.z) return;
    const key = `${this.modelId}|${this.label}|${this.plane.name}|${Array.from(this.z).join(",")}`;
    if (key === this.previewKey) return;
    this.previewKey = key;
    const [a0, a1] = this.plane.a_range, [b0, b1] = this.plane.b_range;
    const [ca, cb] = this.coordinates();
    const { u, v } = this.plane;
    const latents = [];
    for (let row = 0; row < PREVIEW_STEPS; row++) {
      for (let col = 0; col < PREVIEW_STEPS; col++) {
        const a = a0 + ((col + 0.5) / PREVIEW_STEPS) * (a1 - a0);
        const b = b1 - ((row + 0.5) / PREVIEW_STEPS) * (b1 - b0);
        for (let k = 0; k < this.dim; k++) latents.push(this.z[k] + (a - ca) * u[k] + (b - cb) * v[k]);
      }
    }
    const count = PREVIEW_STEPS * PREVIEW_STEPS;
    const pixels = await this.decoder.run(latents, count, this.label);
    if (key !== this.previewKey) return;
    const [channels, height, width] = this.shape;
    const tile = document.createElement("canvas");
    tile.width = width;
    tile.height = height;
    const context = this.preview.getContext("2d");
    context.imageSmoothingEnabled = false;
    context.clearRect(0, 0, PAD_SIDE, PAD_SIDE);
    const side = PAD_SIDE / PREVIEW_STEPS;
    for (let n = 0; n < count; n++) {
      tile.getContext("2d").putImageData(toImageData(pixels, n * channels * height * width, this.shape), 0, 0);
      context.drawImage(tile, (n % PREVIEW_STEPS) * side, Math.floor(n / PREVIEW_STEPS) * side, side, side);
    }
    this.drawPad();
  }

  destroy() {
    if (hub().active === this) hub().active = null;
    clearTimeout(this.commitTimer);
    this.marker.destroy();
    this.decoder = null;
  }
}

const instances = new WeakMap();

export default function (component) {
  const { data, parentElement, setStateValue } = component;
  if (data instanceof Uint8Array) { // decoder_model: the checkpoint's bundle
    const bundle = parseBundle(data);
    if (bundle && !hub().bundles.has(bundle.id)) hub().putBundle(bundle.id, bundle);
    return undefined;
  }
  let instance = instances.get(parentElement);
  if (!instance) {
    instance = new LiveLatent(parentElement);
    instances.set(parentElement, instance);
  }
  instance.update(data, setStateValue);
  return () => {
    instance.destroy();
    instances.delete(parentElement);
  };
}
