// The map's scatterplot library, bundled by `make vendor-scatter` into static/scatter/: the
// WebGL scatterplot (regl-scatterplot) and the linear scales it keeps in step with its camera.
export { default as createScatterplot } from "regl-scatterplot";
export { scaleLinear } from "d3-scale";
