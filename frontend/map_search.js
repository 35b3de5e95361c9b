// What the map's search box finds and what its export writes. LAYERS are the splits the map
// draws, in order: [{split: "test" | "training", bundle}], bundle a points bundle (bundle.js);
// a map row is a point's position in that order (the test split first).

const MAX_NAME_MATCHES = 5000;

// (layer, row within it) of map ROW
function layerOf(layers, row) {
  let offset = 0;
  for (const layer of layers) {
    if (row < offset + layer.bundle.n) return [layer, row - offset];
    offset += layer.bundle.n;
  }
  return [null, -1];
}

// Map rows of the points QUERY names, and a sentence saying what was found: a class by its name
// (MNIST's "7" is the class), "#123" (or "123") a test image, "train 123" a training image,
// else the images whose name contains the text (an image folder's file stems), else the
// classes whose name contains it.
function findPoints(layers, classes, query) {
  const text = query.trim().toLowerCase();
  if (!text) return { rows: [], said: "" };
  const rows = [];
  const each = (test) => {
    let offset = 0;
    for (const layer of layers) {
      for (let r = 0; r < layer.bundle.n; r++) if (test(layer, r)) rows.push(offset + r);
      offset += layer.bundle.n;
    }
  };
  const exact = classes.findIndex((name) => name.toLowerCase() === text);
  if (exact >= 0) {
    each((layer, r) => layer.bundle.labels[r] === exact);
    return { rows, said: `${rows.length.toLocaleString()} points of class ${classes[exact]}` };
  }
  const numbered = text.match(/^(train(?:ing)?\s*)?#?\s*(\d+)$/);
  if (numbered) {
    const split = numbered[1] ? "training" : "test", wanted = Number(numbered[2]);
    each((layer, r) => layer.split === split && layer.bundle.index[r] === wanted);
    return { rows, said: rows.length ? `${split} image #${wanted}` : `No ${split} image #${wanted} is on the map.` };
  }
  each((layer, r) => rows.length < MAX_NAME_MATCHES && layer.bundle.names !== null
    && layer.bundle.names[r].toLowerCase().includes(text));
  if (rows.length) return { rows, said: `${rows.length.toLocaleString()} images whose name holds “${query.trim()}”` };
  const partial = new Set(classes.flatMap((name, k) => (name.toLowerCase().includes(text) ? [k] : [])));
  each((layer, r) => partial.has(layer.bundle.labels[r]));
  if (rows.length) return { rows, said: `${rows.length.toLocaleString()} points of ${[...partial].map((k) => classes[k]).join(", ")}` };
  return { rows, said: `Nothing matches “${query.trim()}”: try a class name, #index, train #index or part of an image's name.` };
}

function csvField(value) {
  const text = String(value);
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

// The CSV of map ROWS: split, index (in its split), label (the class's name), name (where the
// data set names its images), z1…zD (the encoder's mean), x, y (the map position); one line each.
function selectionCsv(layers, classes, rows) {
  const d = layers[0].bundle.d;
  const named = layers.some((layer) => layer.bundle.names !== null);
  const header = ["split", "index", "label", ...(named ? ["name"] : []),
    ...Array.from({ length: d }, (_, j) => `z${j + 1}`), "x", "y"];
  const lines = [header.join(",")];
  for (const row of rows) {
    const [layer, r] = layerOf(layers, row);
    if (!layer) continue;
    const b = layer.bundle, label = b.labels[r];
    const fields = [layer.split, b.index[r], csvField(classes[label] ?? label)];
    if (named) fields.push(csvField(b.names ? b.names[r] : ""));
    for (let j = 0; j < d; j++) fields.push(Number(b.means[r * d + j].toPrecision(7)));
    fields.push(Number(b.embedding[2 * r].toPrecision(7)), Number(b.embedding[2 * r + 1].toPrecision(7)));
    lines.push(fields.join(","));
  }
  return lines.join("\n") + "\n";
}
