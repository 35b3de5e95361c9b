// The card beside a hovered point: its image (a test image from a thumbnails bundle's sheet, a
// training image as Python sent it) beside its reconstruction (its encoded mean through the
// page's decoder, when the controls run one).

const CARD_SCALE = 2;

class MapCard {
  constructor(parent) {
    this.node = el("div", { class: "lx-map-card", role: "img" });
    this.node.style.display = "none";
    parent.append(this.node);
    this.sheets = new Map(); // thumbnails bundle id -> Promise<{bitmap, columns, count}>
    this.shown = null; // the map row shown, while the card is up
  }

  // the bundle's sheet as a bitmap, decoded once (hovers that arrive meanwhile wait for it)
  sheet(id) {
    if (!id) return Promise.resolve(null);
    if (!this.sheets.has(id)) {
      this.sheets.set(id, hub().getBundle(id).then(async (bundle) => {
        const bitmap = await createImageBitmap(new Blob([bundle.thumbnails.png], { type: "image/png" }));
        return { bitmap, columns: bundle.thumbnails.columns, count: bundle.thumbnails.count };
      }).catch(() => {
        this.sheets.delete(id); // asked again on the next hover
        return null;
      }));
    }
    return this.sheets.get(id);
  }

  // POINT: {mapRow, row (in its split), split, bundle, caption, sheetId, imageUrl (a training
  // image's: a data URL, null where the server has none, undefined before it is asked)}; AT: [x, y] in the
  // plot's pixels; SHAPE: (C, H, W); CONTROLS: the live controls or null
  async show(point, at, shape, controls, plotSize) {
    const [, height, width] = shape;
    const side = Math.max(56, width * CARD_SCALE);
    this.shown = point.mapRow;
    const original = el("canvas", { class: "lx-card-image", width: side, height: side * (height / width) });
    const recon = el("canvas", { class: "lx-card-reconstruction", width: side, height: side * (height / width) });
    const figure = (canvas, caption) => el("figure", {}, [canvas, el("figcaption", {}, [caption])]);
    this.node.replaceChildren(
      el("div", { class: "lx-card-images" }, [figure(original, "image"), figure(recon, "reconstruction")]),
      el("div", { class: "lx-card-caption" }, [point.caption]),
    );
    this.node.dataset.row = point.row;
    this.node.dataset.split = point.split;
    this.node.setAttribute("aria-label", `${point.caption}: the image beside its reconstruction`);
    const cardWidth = 2 * side + 16, cardHeight = side + 48;
    const left = at[0] - cardWidth - 14 < 0 ? at[0] + 14 : at[0] - cardWidth - 14;
    const top = Math.min(Math.max(at[1] - cardHeight / 2, 0), Math.max(0, plotSize[1] - cardHeight));
    this.node.style.transform = `translate(${left}px, ${top}px)`;
    this.node.style.display = "flex";
    const { row, bundle } = point, d = bundle.d;
    if (controls && controls.decoder) {
      const pixels = await controls.decoder.run(bundle.means.subarray(row * d, row * d + d), 1, controls.label);
      if (this.shown !== point.mapRow) return;
      controls.drawTo(pixels, recon);
    } else {
      recon.parentElement.hidden = true;
    }
    const context = original.getContext("2d");
    context.imageSmoothingEnabled = false;
    if (point.split === "training") { // a training image comes from Python when the pointer rests
      if (point.imageUrl === null) original.parentElement.hidden = true; // not on the server
      if (!point.imageUrl) return;
      const picture = new Image();
      picture.src = point.imageUrl;
      await picture.decode();
      if (this.shown !== point.mapRow) return;
      context.drawImage(picture, 0, 0, original.width, original.height);
      return;
    }
    const sheet = await this.sheet(point.sheetId);
    if (this.shown !== point.mapRow) return;
    if (!sheet || row >= sheet.count) {
      original.parentElement.hidden = true;
      return;
    }
    const sx = (row % sheet.columns) * width, sy = Math.floor(row / sheet.columns) * height;
    context.drawImage(sheet.bitmap, sx, sy, width, height, 0, 0, original.width, original.height);
    const stats = hub().test.stats;
    stats.cards = (stats.cards || 0) + 1;
  }

  hide() {
    this.shown = null;
    this.node.style.display = "none";
  }
}
