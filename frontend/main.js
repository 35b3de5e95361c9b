// The components' entry point; the module is runtime.js, bundle.js, latent.js, map_search.js,
// map_card.js, map_overlay.js, atlas_map.js, controls.js and this file, in that order, after
// Python's SHARED constants (explorer/live.py frontend_script). Each registered component gets
// its own copy; they dispatch on their name and meet in the page-wide hub (runtime.js):
//   decoder_model: data = a bundle (bytes: a decoder, a split's points, thumbnails), sent once per model;
//   live_latent:   data = small JSON (bundle ids, shape, latent, revision, ranges, pad planes);
//   atlas_map:     data = small JSON (points bundle ids, classes and colours, latent, path).

const instances = new WeakMap();

export default function (component) {
  const { name, data, parentElement, setStateValue } = component;
  if (name.endsWith("decoder_model")) {
    const bundle = data instanceof Uint8Array ? parseBundle(data) : null;
    if (bundle && !hub().bundles.has(bundle.id)) hub().putBundle(bundle.id, bundle);
    return undefined;
  }
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
