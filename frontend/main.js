// The components' entry point; the module is runtime.js, bundle.js, latent.js, map_marker.js,
// controls.js and this file, in that order, after Python's SHARED constants (explorer/live.py
// frontend_script). Each registered component gets its own copy; they dispatch on their name:
//   decoder_model: data = the checkpoint's bundle (bytes), sent once per model;
//   live_latent:   data = small JSON (bundle id, shape, latent, revision, ranges, pad planes).

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
    instance = new LiveLatent(parentElement);
    instances.set(parentElement, instance);
  }
  instance.update(data, setStateValue);
  return () => {
    instance.destroy();
    instances.delete(parentElement);
  };
}
