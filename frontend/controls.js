// The controls: range inputs z1…zD (a value can be typed: click the number), a 2-D pad and a
// concept slider, whose every input event decodes in the browser (runtime.js), drawn
// nearest-neighbour; the star on the map follows and the map decodes where the pointer is
// (atlas_map.js). The latent goes back to Python on release, snapped to the
// sliders' grid; Python moves the controls by bumping `revision`.

const IMAGE_SIDE = 320; // CSS pixels of the decoded image
const PAD_SIDE = 220;
const PREVIEW_STEPS = 9; // the pad's background: a 9 × 9 grid of decoded points of the plane
const COMMIT_DELAY_MS = 150; // a key step's pause before Python is told (commit)
const STRIP_HEIGHT = 40; // the concept slider's strip of every test point's projection
const GROUP_COLOURS = { a: "#4e79a7", b: "#f28e2b" };

// (C, H, W) values in [0, SCALE] at `offset` (float32 in [0, 1], or 8-bit with SCALE 255)
// -> RGBA pixels of an ImageData.
function toImageData(values, offset, shape, scale = 1) {
  const [channels, height, width] = shape;
  const plane = height * width;
  const image = new ImageData(width, height);
  const rgba = image.data;
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) {
      const v = values[offset + (channels === 1 ? 0 : c) * plane + p] / scale;
      rgba[4 * p + c] = Math.round(Math.min(Math.max(v, 0), 1) * 255);
    }
    rgba[4 * p + 3] = 255;
  }
  return image;
}

// base64 text -> its bytes
function fromBase64(text) {
  const chars = atob(text);
  const bytes = new Uint8Array(chars.length);
  for (let i = 0; i < chars.length; i++) bytes[i] = chars.charCodeAt(i);
  return bytes;
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
    this.keyed = false; // the last slider change came from a key (watchKeys)
    this.plane = null;
    this.previewKey = null;
    this.failed = false;
    this.bundle = null; // the atlas's test points (points bundle): the concept strip's projections
    this.pointsId = null;
    // the compared decoder (a sharpened sibling's, or the VAE's), drawn beside on every decode
    this.compare = { modelId: null, decoder: null, canvas: null };
    this.concept = null; // the concept direction's slider, when Python sent one
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
    this.farNote = el("div", { class: "lx-far-note", role: "status" });
    this.farNote.hidden = true;
    const left = el("div", { class: "lx-left" },
      [el("div", { class: "lx-figures" }, figures), this.farNote, this.status]);

    this.inputs = [];
    this.outputs = [];
    const rows = [];
    for (let i = 0; i < dim; i++) {
      const input = el("input", { type: "range", step: "0.01", "aria-label": `z${i + 1}` });
      const output = el("output", { class: "lx-value", tabindex: "0", title: "click to type a value",
        "aria-label": `z${i + 1} value: click to type` });
      input.addEventListener("input", () => this.onSlide(i));
      this.watchKeys(input);
      input.addEventListener("change", () => this.commit(this.keyed));
      output.addEventListener("click", (event) => { event.preventDefault(); this.startTyping(i); });
      output.addEventListener("keydown", (event) => { if (event.key === "Enter") this.startTyping(i); });
      this.inputs.push(input);
      this.outputs.push(output);
      rows.push(el("label", { class: "lx-row" }, [el("span", { class: "lx-name" }, [`z${i + 1}`]), input, output]));
    }
    this.planeSelect = el("select", { "aria-label": "pad plane", class: "lx-select" });
    this.planeNames = null; // a new, empty selector: fillPlanes fills it
    this.planeSelect.addEventListener("change", () => this.choosePlane());
    this.pad = el("canvas", { class: "lx-pad", width: PAD_SIDE, height: PAD_SIDE, tabindex: "0",
      "aria-label": "2-D pad: drag to move z across the chosen plane" });
    this.preview = el("canvas", { width: PAD_SIDE, height: PAD_SIDE });
    this.pad.addEventListener("pointerdown", (event) => this.onPadDown(event));
    this.pad.addEventListener("pointermove", (event) => this.onPadMove(event));
    this.pad.addEventListener("pointerup", (event) => this.onPadUp(event));
    this.pad.addEventListener("pointercancel", (event) => this.onPadUp(event));
    this.pad.addEventListener("keydown", (event) => this.onPadKey(event));
    this.pad.addEventListener("keyup", (event) => { if (event.key.startsWith("Arrow")) this.commit(true); });
    const padBox = el("div", { class: "lx-padbox" }, [
      el("label", { class: "lx-caption" }, ["2-D pad ", this.planeSelect]), this.pad]);
    this.typeNote = el("div", { class: "lx-type-note", role: "alert" });
    this.typeNote.hidden = true;
    this.conceptBox = el("div", { class: "lx-concept" });
    this.conceptKey = null;
    const right = el("div", { class: "lx-right" },
      [el("div", { class: "lx-sliders" }, rows), this.typeNote, padBox, this.conceptBox]);
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
      hub().map?.recommit(this.z);
      this.showValues();
    }
    this.updateConcept(data.concept);
    if (data.label !== this.label) { // a conditional model's class, picked in Python
      this.label = data.label;
      this.previewKey = null;
      this.changed();
    }
    if (!this.decoder && data.image) this.drawPlaceholder(data.image, this.image);
    const assetUrl = new URL(data.asset_url, window.location.origin).href;
    this.updateCompare(data, assetUrl);
    hub().controls = this;
    if (data.points_id !== this.pointsId) {
      this.pointsId = data.points_id;
      this.bundle = null;
      const wanted = data.points_id;
      if (wanted) {
        hub().getBundle(wanted).then((bundle) => {
          if (this.pointsId !== wanted) return;
          this.bundle = bundle;
          this.conceptKey = null; // its strip needs the means
          this.updateConcept(this.data.concept);
        }).catch(() => undefined); // no strip: the map, which needs the same points, says why
      }
    }
    if (data.bundle_id !== this.modelId) {
      this.modelId = data.bundle_id;
      this.decoder = null;
      const wanted = data.bundle_id;
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
    if (data.compare.image) this.drawPlaceholder(data.compare.image, this.compare.canvas);
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
      if (!this.outputs[i].querySelector("input")) this.outputs[i].textContent = value.toFixed(2);
    });
    this.showConcept();
    this.changed();
  }

  onSlide(i) {
    this.z[i] = parseFloat(this.inputs[i].value);
    this.outputs[i].textContent = this.z[i].toFixed(2);
    this.showConcept();
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
    if (this.z) hub().map?.showZ(this.z);
  }

  // The map's hover (atlas_map.js) shows Z, the latent under the pointer; leaving, the
  // committed z. FAR_GAP: how many typical spacings away the nearest point is, when that is
  // far enough for the decode to be a guess (the image fades and says so); else null.
  hoverTo(z, farGap) {
    for (let k = 0; k < this.dim; k++) this.z[k] = Math.min(Math.max(z[k], this.low[k]), this.high[k]);
    const far = farGap !== null;
    this.image.classList.toggle("lx-far", far);
    this.farNote.hidden = !far;
    if (far) {
      this.farNote.textContent = `Far from the data: the nearest test image is ${farGap.toFixed(1)}× the map's `
        + "usual spacing away, so this image is a guess.";
    }
    this.showValues();
  }

  // whether SLIDER's last change came from a key (commit waits for a pause) or the pointer
  watchKeys(slider) {
    slider.addEventListener("keydown", () => { this.keyed = true; });
    slider.addEventListener("pointerdown", () => { this.keyed = false; });
  }

  // Send z to Python: at once for a release or a typed value, after a pause for keys (a key held
  // down or tapped fast is one rerun). The pad's grid is redrawn when the rerun comes back
  // (update): its 81 decodes, begun any sooner, would hold up the step's own image or the rerun.
  commit(keyed = false) {
    clearTimeout(this.commitTimer);
    this.commitTimer = setTimeout(() => {
      this.setStateValue("latent", snapLatent(this.z, this.low, this.high));
    }, keyed ? COMMIT_DELAY_MS : 0);
    this.previewKey = null;
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

  // one decoded image (C·H·W values in [0, SCALE]) onto CANVAS, scaled nearest-neighbour to its size
  drawTo(pixels, canvas, scale = 1) {
    this.small.getContext("2d").putImageData(toImageData(pixels, 0, this.shape, scale), 0, 0);
    const context = canvas.getContext("2d");
    context.imageSmoothingEnabled = false;
    context.drawImage(this.small, 0, 0, canvas.width, canvas.height);
  }

  draw(pixels, canvas) {
    this.drawTo(pixels, canvas);
    const stats = hub().test.stats;
    if (canvas === this.image) stats.draws += 1;
    else stats.compareDraws = (stats.compareDraws || 0) + 1;
    if (hub().test.timing.firstDraw === null) hub().test.timing.firstDraw = performance.now();
    hub().test.active = this;
  }

  // The server's decode of the latent (base64 of 8-bit C·H·W values), drawn on CANVAS until the
  // browser's decoder runs: at once, so it shows before the map's first draw holds the thread.
  drawPlaceholder(base64, canvas) {
    this.drawTo(fromBase64(base64), canvas, 255);
    if (hub().test.timing.placeholder === null) hub().test.timing.placeholder = performance.now();
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
    const count = PREVIEW_STEPS * PREVIEW_STEPS, [channels, height, width] = this.shape;
    const pixels = new Float32Array(count * channels * height * width), perRow = PREVIEW_STEPS * this.dim;
    // a row a frame: the image's own decode, asked for on the next frame, waits for a row, not the grid
    for (let row = 0; row < PREVIEW_STEPS; row++) {
      const decoded = await this.decoder.run(latents.slice(row * perRow, (row + 1) * perRow), PREVIEW_STEPS, this.label);
      await new Promise((done) => requestAnimationFrame(() => done()));
      if (key !== this.previewKey) return;
      pixels.set(decoded, row * PREVIEW_STEPS * channels * height * width);
    }
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

  // ------------------------------------------------------------------ typed values

  startTyping(i) {
    const output = this.outputs[i];
    if (output.querySelector("input")) return;
    const field = el("input", { type: "text", class: "lx-type", "aria-label": `type z${i + 1}`,
      value: this.z[i].toFixed(2), size: "5" });
    let done = false;
    const finish = (apply) => {
      if (done) return;
      done = true;
      const text = field.value;
      field.remove();
      output.textContent = this.z[i].toFixed(2);
      if (apply) this.typeValue(i, text);
    };
    field.addEventListener("keydown", (event) => {
      event.stopPropagation();
      if (event.key === "Enter") finish(true);
      if (event.key === "Escape") finish(false);
    });
    field.addEventListener("blur", () => finish(true));
    field.addEventListener("click", (event) => event.preventDefault());
    output.replaceChildren(field);
    field.focus();
    field.select();
  }

  // TEXT typed for z_i: a finite number, clamped to the slider's range and snapped to its grid
  // as Python does with the URL's values; anything else is refused with a sentence.
  typeValue(i, text) {
    const low = this.low[i], high = this.high[i];
    const range = `from ${low.toFixed(2)} to ${high.toFixed(2)}`;
    const trimmed = text.trim().replace(/^−/, "-"); // a typographic minus too
    const value = /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(trimmed) ? Number(trimmed) : NaN;
    if (!Number.isFinite(value)) {
      this.typeNote.textContent = `“${text.slice(0, 20)}” is not a number; type z${i + 1} as a number ${range}.`;
      this.typeNote.hidden = false;
      return;
    }
    const [snapped] = snapLatent([value], [low], [high]);
    this.typeNote.hidden = snapped === value || Math.abs(snapped - value) < 0.005;
    this.typeNote.textContent = `z${i + 1} = ${trimmed} is outside its range ${range}: set to ${snapped.toFixed(2)}.`;
    this.z[i] = snapped;
    this.showValues();
    this.commit();
  }

  // ------------------------------------------------------------------ the concept slider

  // CONCEPT: {name, origin (D), u (D), a_rows, b_rows} from Python (explorer/concept.py), or null.
  // Its coordinate is t(z) = (z − origin)·u / |u|²: 0 at group A's mean, 1 at group B's.
  updateConcept(concept) {
    const key = concept ? JSON.stringify([concept.name, concept.u, concept.origin]) : null;
    if (key === this.conceptKey) return;
    this.conceptKey = key;
    this.conceptBox.replaceChildren();
    this.concept = null;
    if (!concept) return;
    if (!(concept.u.some((x) => x !== 0))) return;
    const c = { ...concept };
    // every test point's t, for the strip and the slider's range
    let t0 = 0, t1 = 1;
    c.projections = null;
    if (this.bundle && this.bundle.means) {
      const { n, d, means } = this.bundle;
      c.projections = conceptProjections(means, n, d, c.origin, c.u);
      for (const t of c.projections) {
        t0 = Math.min(t0, t);
        t1 = Math.max(t1, t);
      }
    }
    const pad = 0.05 * (t1 - t0);
    c.range = [t0 - pad, t1 + pad];
    c.input = el("input", { type: "range", min: c.range[0], max: c.range[1], step: (c.range[1] - c.range[0]) / 400,
      "aria-label": `concept: ${concept.name}` });
    c.output = el("output", { class: "lx-value" });
    c.input.addEventListener("input", () => this.moveAlongConcept(parseFloat(c.input.value)));
    this.watchKeys(c.input);
    c.input.addEventListener("change", () => this.commit(this.keyed));
    c.strip = el("canvas", { class: "lx-concept-strip", width: PAD_SIDE, height: STRIP_HEIGHT,
      "aria-label": `every test image's position along ${concept.name}` });
    c.background = this.stripBackground(c);
    this.conceptBox.append(el("div", { class: "lx-caption" }, [`Concept: ${concept.name}`]),
      el("label", { class: "lx-row" }, [el("span", { class: "lx-name" }, ["t"]), c.input, c.output]), c.strip);
    this.concept = c;
    this.showConcept();
  }

  conceptT() {
    return conceptPosition(this.z, this.concept.origin, this.concept.u);
  }

  moveAlongConcept(t) {
    const moved = conceptMove(this.z, t, this.concept.origin, this.concept.u, this.low, this.high);
    for (let k = 0; k < this.dim; k++) this.z[k] = moved[k];
    this.showValues();
  }

  stripBackground(c) {
    const canvas = el("canvas", { width: PAD_SIDE, height: STRIP_HEIGHT });
    if (!c.projections) return canvas;
    const context = canvas.getContext("2d");
    const x = (t) => ((t - c.range[0]) / (c.range[1] - c.range[0])) * PAD_SIDE;
    const jitter = (row) => ((Math.imul(row + 1, 2654435761) >>> 0) / 4294967296) * (STRIP_HEIGHT - 6) + 3;
    context.fillStyle = "rgba(120, 120, 120, 0.25)";
    c.projections.forEach((t, row) => context.fillRect(x(t), jitter(row), 1, 2));
    for (const group of ["a", "b"]) {
      context.fillStyle = GROUP_COLOURS[group];
      for (const row of c[`${group}_rows`] || []) {
        if (row < c.projections.length) context.fillRect(x(c.projections[row]), jitter(row), 1.5, 2.5);
      }
    }
    return canvas;
  }

  showConcept() {
    const c = this.concept;
    if (!c || !this.z) return;
    const t = this.conceptT();
    c.input.value = t;
    c.output.textContent = t.toFixed(2);
    const context = c.strip.getContext("2d");
    context.clearRect(0, 0, PAD_SIDE, STRIP_HEIGHT);
    context.drawImage(c.background, 0, 0);
    const x = ((t - c.range[0]) / (c.range[1] - c.range[0])) * PAD_SIDE;
    context.fillStyle = "#ff4b4b";
    context.fillRect(Math.min(Math.max(x, 0), PAD_SIDE - 2) - 1, 0, 2, STRIP_HEIGHT);
  }

  destroy() {
    if (hub().test.active === this) hub().test.active = null;
    clearTimeout(this.commitTimer);
    if (hub().controls === this) hub().controls = null;
    this.decoder = null;
  }
}
