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
