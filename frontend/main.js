// The components' entry point; the module is runtime.js, bundle.js, latent.js, map_search.js,
// map_card.js, map_overlay.js, atlas_map.js, controls.js and this file, in that order, after
// Python's SHARED constants (explorer/live.py frontend_script). Each registered component gets
// its own copy; they dispatch on their name and meet in the page-wide hub (runtime.js):
//   live_latent: data = small JSON (bundle ids, shape, latent, revision, ranges, pad planes);
//   atlas_map:   data = small JSON (points bundle ids, classes and colours, latent, path).
// The bundles themselves (a decoder, a split's points, thumbnails) are fetched by id (hub().getBundle).

const instances = new WeakMap();

export default function (component) {
  const { name, data, parentElement, setStateValue } = component;
  hub().bundleUrl = data.bundle_url;
  let instance = instances.get(parentElement);
  if (!instance) {
    instance = name.endsWith("atlas_map") ? new AtlasMap(parentElement) : new LiveLatent(parentElement);
    instances.set(parentElement, instance);
  }
  instance.update(data, setStateValue);
  return () => {
    instance.destroy();
    instances.delete(parentElement);
  };
}
