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
