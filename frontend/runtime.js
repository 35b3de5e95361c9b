// The runtime and the decode queue, and the page-wide hub the two components share: they live
// in shadow roots of one page, each its own module, so what they share hangs off `window`.
// Under `test` are the hooks tests and benchmarks read; nothing in the page depends on them.

const HUB_NAME = "__latentExplorer";

function hub() {
  if (!window[HUB_NAME]) {
    window[HUB_NAME] = {
      bundles: new Map(), // bundle id -> Promise<{onnx: Uint8Array, means?: Float32Array, embedding?, n, d}>
      bundleUrl: null, // where bundles are fetched (+ id: ui/bundles.py), from the components' JSON
      sessions: new Map(), // bundle id -> Promise<decoder>
      ort: null, // Promise<ort module>
      // A bundle, fetched once per page (and kept by the browser's cache: its URL never changes)
      getBundle(id) {
        if (!this.bundles.has(id)) {
          const loading = fetchBundle(this.bundleUrl + id, id);
          loading.catch(() => this.bundles.delete(id)); // a failed fetch is tried again when next asked
          this.bundles.set(id, loading);
        }
        return this.bundles.get(id);
      },
      test: {
        active: null, // the controls drawn last: the hooks decode with their model
        stats: { decodes: 0, draws: 0, lastDecodeMs: 0, lastPlaceMs: 0 },
        // milliseconds since navigation start: when the runtime, the session and the first image came
        timing: { mounted: performance.now(), placeholder: null, runtime: null, session: null, firstDraw: null },
        // the map position of z with the active model's atlas
        place(z) {
          return placeOnMap(this.active.bundle, z);
        },
        // a list of latents decoded with the active model: one flat (C·H·W) array each
        async decode(latents, label = 0) {
          if (!this.active || !this.active.decoder) throw new Error("no decoder loaded");
          const out = await this.active.decoder.run(latents.flat(), latents.length, label);
          const size = out.length / latents.length;
          return latents.map((_, i) => Array.from(out.subarray(i * size, (i + 1) * size)));
        },
        snap: (z, low, high) => snapLatent(z, low, high),
        parse: (bytes) => parseBundle(bytes), // a bundle's bytes as the page reads them
      },
    };
  }
  return window[HUB_NAME];
}

async function fetchBundle(url, id) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`a bundle did not load (HTTP ${response.status}): reload the page`);
  const bundle = parseBundle(new Uint8Array(await response.arrayBuffer()));
  if (!bundle || bundle.id !== id) throw new Error("a bundle came back unreadable: reload the page");
  return bundle;
}

function loadOrt(assetUrl) {
  const h = hub();
  if (!h.ort) {
    h.ort = (async () => {
      if (typeof WebAssembly !== "object") {
        throw new Error("this browser has WebAssembly turned off");
      }
      // Fetch the runtime ourselves: Streamlit gzips /app/static/ responses on the fly
      // but passes a Range request through as is.
      const [ort, , wasm] = await Promise.all([
        import(assetUrl + "ort.wasm.min.mjs"),
        import(assetUrl + "ort-wasm-simd-threaded.mjs"), // ort imports it next: start it now
        fetch(assetUrl + "ort-wasm-simd-threaded.wasm", { headers: { Range: "bytes=0-" } })
          .then((response) => {
            if (!response.ok) throw new Error(`the decoder runtime did not load (HTTP ${response.status})`);
            return response.arrayBuffer();
          }),
      ]);
      ort.env.wasm.wasmPaths = assetUrl;
      ort.env.wasm.wasmBinary = wasm;
      // More threads need a cross-origin-isolated page, which Streamlit does not serve.
      ort.env.wasm.numThreads = 1;
      ort.env.wasm.proxy = false;
      h.test.timing.runtime = performance.now();
      return ort;
    })();
  }
  return h.ort;
}

// One onnxruntime session per model, with its runs in a queue: a session runs one call at a time.
function getDecoder(modelId, latentDim, numClasses, assetUrl) {
  const h = hub();
  if (!h.sessions.has(modelId)) {
    h.sessions.set(modelId, (async () => {
      const [ort, bundle] = await Promise.all([loadOrt(assetUrl), h.getBundle(modelId)]);
      const session = await ort.InferenceSession.create(bundle.onnx, { executionProviders: ["wasm"] });
      if (h.test.timing.session === null) h.test.timing.session = performance.now();
      let queue = Promise.resolve();
      return {
        latentDim,
        // values: count × D latents, flat; label: the class, for a conditional model
        run(values, count, label = 0) {
          const job = queue.then(async () => {
            const started = performance.now();
            const feeds = { z: new ort.Tensor("float32", Float32Array.from(values), [count, latentDim]) };
            if (numClasses > 0) {
              const y = new Float32Array(count * numClasses);
              for (let n = 0; n < count; n++) y[n * numClasses + label] = 1;
              feeds.y = new ort.Tensor("float32", y, [count, numClasses]);
            }
            const result = await session.run(feeds);
            h.test.stats.decodes += count;
            h.test.stats.lastDecodeMs = performance.now() - started;
            return result.image.data; // (count, C, H, W) float32 in [0, 1]
          });
          queue = job.catch(() => undefined);
          return job;
        },
      };
    })());
  }
  return h.sessions.get(modelId);
}
