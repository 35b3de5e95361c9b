// The controls: range inputs z1…zD and a 2-D pad whose every input event decodes in the browser
// (runtime.js), drawn nearest-neighbour; the star on the map follows (map_marker.js). The latent
// goes back to Python on release, snapped to the sliders' grid; Python moves the controls by
// bumping `revision`.

const IMAGE_SIDE = 320; // CSS pixels of the decoded image
const PAD_SIDE = 220;
const PREVIEW_STEPS = 9; // the pad's background: a 9 × 9 grid of decoded points of the plane
const COMMIT_DELAY_MS = 150;

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
    // the compared decoder (a sharpened sibling's, or the VAE's), drawn beside on every decode
    this.compare = { modelId: null, decoder: null, canvas: null };
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
    this.status.hidden = Boolean(this.decoder); // rebuilt (the compared decoder switched) with the decoder running
    const figures = [el("figure", { class: "lx-figure" }, [this.image,
      el("figcaption", { class: "lx-figcaption" }, [data.caption || ""])])];
    this.compare.canvas = null;
    if (data.compare) {
      this.compare.canvas = el("canvas", { class: "lx-image lx-image-compare", width: IMAGE_SIDE, height: IMAGE_SIDE,
        "aria-label": "decoded image, compared decoder", role: "img" });
      figures.push(el("figure", { class: "lx-figure" }, [this.compare.canvas,
        el("figcaption", { class: "lx-figcaption" }, [data.compare.caption])]));
    }
    this.box.classList.toggle("lx-comparing", Boolean(data.compare));
    const left = el("div", { class: "lx-left" }, [el("div", { class: "lx-figures" }, figures), this.status]);

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
    const shapeKey = JSON.stringify([data.shape, data.latent.length, data.caption, data.compare?.caption]);
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
    if (!this.decoder && data.image) this.drawPlaceholder(data.image, this.image, () => this.decoder);
    const assetUrl = new URL(data.asset_url, window.location.origin).href;
    this.updateCompare(data, assetUrl);
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
        hub().test.active = this;
        this.request();
        this.drawPreview();
      }).catch((error) => this.fail(error));
    } else {
      this.request();
      this.drawPreview();
    }
  }

  updateCompare(data, assetUrl) {
    const wanted = data.compare ? data.compare.bundle_id : null;
    if (wanted === this.compare.modelId) return;
    this.compare.modelId = wanted;
    this.compare.decoder = null;
    if (!wanted) return;
    if (data.compare.image) this.drawPlaceholder(data.compare.image, this.compare.canvas, () => this.compare.decoder);
    getDecoder(wanted, this.dim, data.num_classes, assetUrl).then((decoder) => {
      if (this.compare.modelId !== wanted) return;
      this.compare.decoder = decoder;
      this.request();
    }).catch((error) => this.fail(error));
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
    hub().test.stats.lastPlaceMs = performance.now() - started;
  }

  // Send z to Python once the user pauses (a key held down or tapped fast is one rerun).
  commit() {
    clearTimeout(this.commitTimer);
    this.commitTimer = setTimeout(() => {
      this.setStateValue("latent", snapLatent(this.z, this.low, this.high));
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
        const z = Float32Array.from(this.z); // both images show the same z
        this.draw(await this.decoder.run(z, 1, this.label), this.image);
        if (this.compare.decoder && this.compare.canvas) {
          this.draw(await this.compare.decoder.run(z, 1, this.label), this.compare.canvas);
        }
      }
    } catch (error) {
      this.fail(error);
    } finally {
      this.busy = false;
    }
  }

  draw(pixels, canvas) {
    this.small.getContext("2d").putImageData(toImageData(pixels, 0, this.shape), 0, 0);
    const context = canvas.getContext("2d");
    context.imageSmoothingEnabled = false;
    context.drawImage(this.small, 0, 0, IMAGE_SIDE, IMAGE_SIDE);
    const stats = hub().test.stats;
    if (canvas === this.image) stats.draws += 1;
    else stats.compareDraws = (stats.compareDraws || 0) + 1;
    if (hub().test.timing.firstDraw === null) hub().test.timing.firstDraw = performance.now();
    hub().test.active = this;
  }

  // The server's decode of the latent (a PNG data URL), drawn on CANVAS until its decoder runs.
  drawPlaceholder(url, canvas, decoderOf) {
    const picture = new Image();
    picture.onload = () => {
      if (decoderOf()) return;
      const context = canvas.getContext("2d");
      context.imageSmoothingEnabled = false;
      context.drawImage(picture, 0, 0, IMAGE_SIDE, IMAGE_SIDE);
      if (hub().test.timing.placeholder === null) hub().test.timing.placeholder = performance.now();
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
    if (hub().test.active === this) hub().test.active = null;
    clearTimeout(this.commitTimer);
    this.marker.destroy();
    this.decoder = null;
  }
}
