// What is drawn over the map's points, in SVG: the star at z, rings round its nearest means,
// the interpolation's path through its steps, and a ring round the point under the pointer.
// Not in the WebGL scene: without a GPU (chromium's software WebGL) a redraw of the points
// takes ~100 ms, and these move on every input event while the points stay put.

const SVG_NS = "http://www.w3.org/2000/svg";
const STAR_RADIUS_PX = 13;
const NEIGHBOUR_RADIUS_PX = 6;
const HOVER_RADIUS_PX = 6;

function svg(tag, attributes = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

// the points of a STAR_RADIUS_PX five-pointed star round (0, 0), for an SVG polygon
function starPoints() {
  return Array.from({ length: 10 }, (_, i) => {
    const angle = -Math.PI / 2 + (i * Math.PI) / 5, r = i % 2 ? STAR_RADIUS_PX * 0.42 : STAR_RADIUS_PX;
    return `${(r * Math.cos(angle)).toFixed(2)},${(r * Math.sin(angle)).toFixed(2)}`;
  }).join(" ");
}

class MapOverlay {
  constructor(parent) {
    this.node = svg("svg", { class: "lx-map-overlay", "aria-hidden": "true" });
    this.path = svg("polyline", { fill: "none", stroke: "#111", "stroke-width": 2 });
    this.steps = svg("g", { fill: "#111" });
    this.neighbours = svg("g", { fill: "none", stroke: "#555", "stroke-width": 1.2 });
    this.hovered = svg("circle", { r: HOVER_RADIUS_PX, fill: "none", stroke: "#111", "stroke-width": 1.5 });
    this.star = svg("polygon", { points: starPoints(), fill: "#111", stroke: "white", "stroke-width": 2 });
    this.node.append(this.path, this.steps, this.neighbours, this.hovered, this.star);
    parent.append(this.node);
  }

  // TO_PIXELS: map position -> [x, y] in the plot's pixels; STAR: {xy, neighbours: [[x, y], ...]}
  // or null; PATH: map positions or null; HOVERED: a point's map position or null
  draw(toPixels, star, path, hovered) {
    const at = (xy) => toPixels(xy).map((v) => v.toFixed(1));
    const steps = path && path.length > 1 ? path.map(at) : [];
    this.path.setAttribute("points", steps.map((p) => p.join(",")).join(" "));
    this.steps.replaceChildren(...steps.map(([x, y]) => svg("circle", { cx: x, cy: y, r: 3 })));
    const near = star ? star.neighbours.map(at) : [];
    this.neighbours.replaceChildren(...near.map(([x, y]) => svg("circle", { cx: x, cy: y, r: NEIGHBOUR_RADIUS_PX })));
    this.star.style.display = star ? "" : "none";
    if (star) {
      const [x, y] = at(star.xy);
      this.star.setAttribute("transform", `translate(${x} ${y})`);
    }
    this.hovered.style.display = hovered ? "" : "none";
    if (hovered) {
      const [x, y] = at(hovered);
      this.hovered.setAttribute("cx", x);
      this.hovered.setAttribute("cy", y);
    }
  }
}
