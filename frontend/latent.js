// Latent arithmetic the controls and the map share with Python.

// z rounded to the sliders' grid, halves to even as numpy rounds, then clipped to [low, high]:
// the twin of explorer/latent.py snap_latent (tests/test_frontend.py holds them equal).
function snapLatent(z, low, high) {
  const scale = 10 ** SHARED.latentDecimals;
  return Array.from(z, (value, i) => {
    const x = value * scale;
    let rounded = Math.round(x);
    if (Math.abs(x - Math.trunc(x)) === 0.5) rounded = 2 * Math.round(x / 2); // a half: to even
    return Math.min(Math.max(rounded / scale, low[i]), high[i]);
  });
}

// A concept direction's coordinate t(z) = (z − origin)·u / |u|²: 0 at group A's mean (ORIGIN),
// 1 at group B's (origin + u); the twin of explorer/concept.py Concept.position.
function conceptPosition(z, origin, u) {
  let t = 0, uu = 0;
  for (let k = 0; k < u.length; k++) {
    t += (z[k] - origin[k]) * u[k];
    uu += u[k] * u[k];
  }
  return t / uu;
}

// t of each of the N means (a flat N × D array), as Float32Array(N): Concept.projections' twin.
function conceptProjections(means, n, d, origin, u) {
  const projections = new Float32Array(n);
  for (let row = 0; row < n; row++) projections[row] = conceptPosition(means.subarray(row * d, (row + 1) * d), origin, u);
  return projections;
}

// z moved along u until its t is T, z + (t − t(z))·u, clamped to [low, high]: every other
// direction of z is kept (Concept.move, then the sliders' clamp).
function conceptMove(z, t, origin, u, low, high) {
  const step = t - conceptPosition(z, origin, u);
  return Array.from(z, (value, k) => Math.min(Math.max(value + step * u[k], low[k]), high[k]));
}

// Map position of z: the inverse-distance-weighted (1/d²) mean of the map positions of its
// k nearest encoded means; exactly the point's position on a point (explorer/atlas.py).
function placeOnMap(bundle, z, k = 8) {
  return placeAmongNeighbours(bundle, z, k).xy;
}

// placeOnMap's position `xy` and the rows of the k nearest means it is placed among, nearest first.
function placeAmongNeighbours(bundle, z, k = 8) {
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
  const rows = nearest.map(([, row]) => row);
  if (Math.sqrt(nearest[0][0]) < 1e-6) {
    const row = nearest[0][1];
    return { xy: [embedding[2 * row], embedding[2 * row + 1]], rows };
  }
  let x = 0, y = 0, total = 0;
  for (const [d2, row] of nearest) {
    const w = 1 / d2;
    x += w * embedding[2 * row];
    y += w * embedding[2 * row + 1];
    total += w;
  }
  return { xy: [x / total, y / total], rows };
}

// The map positions (N, 2) in a uniform grid of cells, about four points each: the k nearest
// points of a map position in a few cells instead of all N, for every pointer move.
class MapIndex {
  constructor(embedding, n) {
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (let row = 0; row < n; row++) {
      const x = embedding[2 * row], y = embedding[2 * row + 1];
      x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
    }
    this.embedding = embedding;
    this.n = n;
    this.side = Math.max(1, Math.ceil(Math.sqrt(n / 4)));
    this.x0 = x0; this.y0 = y0;
    this.cellW = (x1 - x0) / this.side || 1;
    this.cellH = (y1 - y0) / this.side || 1;
    // counting sort of the rows by cell: cell c's rows are rows[start[c] .. start[c + 1])
    const cells = this.side * this.side;
    const cellOf = new Int32Array(n);
    this.start = new Int32Array(cells + 1);
    for (let row = 0; row < n; row++) {
      cellOf[row] = this.cell(embedding[2 * row], embedding[2 * row + 1]);
      this.start[cellOf[row] + 1]++;
    }
    for (let c = 0; c < cells; c++) this.start[c + 1] += this.start[c];
    const fill = this.start.slice(0, cells);
    this.rows = new Int32Array(n);
    for (let row = 0; row < n; row++) this.rows[fill[cellOf[row]]++] = row;
    // the typical distance between neighbours: the median over points of the nearest other one
    const gaps = [];
    const step = Math.max(1, Math.floor(n / 2000)); // 2,000 points tell the median well enough
    for (let row = 0; row < n; row += step) {
      const near = this.nearest(embedding[2 * row], embedding[2 * row + 1], 2);
      if (near.length > 1) gaps.push(Math.sqrt(near[1][0]));
    }
    gaps.sort((a, b) => a - b);
    this.spacing = gaps.length ? gaps[Math.floor(gaps.length / 2)] : 1;
  }

  cell(x, y) {
    const cx = Math.min(this.side - 1, Math.max(0, Math.floor((x - this.x0) / this.cellW)));
    const cy = Math.min(this.side - 1, Math.max(0, Math.floor((y - this.y0) / this.cellH)));
    return cy * this.side + cx;
  }

  // [[d², row], ...] of the k nearest points of (x, y), nearest first: rings of cells outwards
  // until the ring's nearest possible point is farther than the k-th found.
  nearest(x, y, k) {
    const found = [];
    const consider = (row) => {
      const dx = this.embedding[2 * row] - x, dy = this.embedding[2 * row + 1] - y;
      const d2 = dx * dx + dy * dy;
      if (found.length < k || d2 < found[found.length - 1][0]) {
        let at = found.length;
        while (at > 0 && found[at - 1][0] > d2) at--;
        found.splice(at, 0, [d2, row]);
        if (found.length > k) found.pop();
      }
    };
    const cx = Math.min(this.side - 1, Math.max(0, Math.floor((x - this.x0) / this.cellW)));
    const cy = Math.min(this.side - 1, Math.max(0, Math.floor((y - this.y0) / this.cellH)));
    // how far (x, y) lies outside the grid
    const outX = Math.max(0, this.x0 - x, x - (this.x0 + this.side * this.cellW));
    const outY = Math.max(0, this.y0 - y, y - (this.y0 + this.side * this.cellH));
    for (let ring = 0; ring <= this.side; ring++) {
      for (let gy = cy - ring; gy <= cy + ring; gy++) {
        if (gy < 0 || gy >= this.side) continue;
        for (let gx = cx - ring; gx <= cx + ring; gx++) {
          if (gx < 0 || gx >= this.side) continue;
          if (Math.max(Math.abs(gx - cx), Math.abs(gy - cy)) !== ring) continue; // the ring's border only
          const c = gy * this.side + gx;
          for (let i = this.start[c]; i < this.start[c + 1]; i++) consider(this.rows[i]);
        }
      }
      // a point beyond this ring is at least `ring` whole cells away, and never nearer than the grid
      const reach = Math.max(Math.hypot(outX, outY), ring * Math.min(this.cellW, this.cellH));
      if (found.length === Math.min(k, this.n) && reach * reach >= found[found.length - 1][0]) break;
    }
    return found;
  }
}

// The latent under a map position, the inverse of placeOnMap: the inverse-distance-weighted
// (1/d) mean of the encoded means of the k points nearest (x, y) on the map; exactly a point's
// mean on it. k = 32 and 1/d: closer to held-out images' means and smoother than 1/d² with k = 8
// or umap-learn's inverse_transform (bench/map_inverse.py). Also how far the nearest point is,
// in units of the map's typical spacing.
function latentAtMapPoint(bundle, index, x, y, k = 32) {
  const { d, means } = bundle;
  const near = index.nearest(x, y, k);
  const z = new Float32Array(d);
  const gap = Math.sqrt(near[0][0]);
  if (gap < 1e-9) {
    z.set(means.subarray(near[0][1] * d, near[0][1] * d + d));
  } else {
    let total = 0;
    for (const [d2, row] of near) {
      const w = 1 / Math.sqrt(d2);
      for (let j = 0; j < d; j++) z[j] += w * means[row * d + j];
      total += w;
    }
    for (let j = 0; j < d; j++) z[j] /= total;
  }
  return { z, nearestRow: near[0][1], gap: gap / index.spacing };
}
