// The bundles the browser receives once per model (explorer/live.py: browser_bundle,
// points_bundle, thumbnails_bundle): the magic, a little-endian uint32 header length, a JSON
// header {id, sections}, then the sections, each aligned. SHARED holds the magic and the layout,
// written by Python from its own constants.

function parseBundle(bytes) {
  const { magic, headerStart, align } = SHARED.bundle;
  if (bytes.length < headerStart || new TextDecoder().decode(bytes.subarray(0, magic.length)) !== magic) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getUint32(magic.length, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(headerStart, headerStart + headerLength)));
  const body = headerStart + headerLength;
  const section = (name) => {
    const s = header.sections[name];
    if (!s) return null;
    if (s.offset % align) throw new Error(`bundle section ${name} is not ${align}-byte aligned`);
    return bytes.slice(body + s.offset, body + s.offset + s.length); // a copy: aligned for typed arrays
  };
  const bundle = { id: header.id, onnx: section("onnx") };
  if (header.sections.thumbnails) { // test images, one PNG sheet, row by row
    const [count, columns] = header.sections.thumbnails.shape;
    bundle.thumbnails = { png: section("thumbnails"), count, columns };
  }
  if (header.sections.means && header.sections.embedding) { // one split's points (points_bundle)
    [bundle.n, bundle.d] = header.sections.means.shape;
    bundle.means = new Float32Array(section("means").buffer);
    bundle.embedding = new Float32Array(section("embedding").buffer);
    bundle.labels = header.sections.labels ? new Int32Array(section("labels").buffer) : new Int32Array(bundle.n);
    bundle.index = header.sections.index ? new Int32Array(section("index").buffer) : Int32Array.from({ length: bundle.n }, (_, i) => i);
    bundle.names = header.sections.names ? JSON.parse(new TextDecoder().decode(section("names"))) : null;
    // the scatterplot library's frame, coordinates and KDBush index (explorer/map_index.py)
    const [cx, cy, half] = new Float64Array(section("frame").buffer);
    bundle.frame = { cx, cy, half };
    bundle.positions = new Float32Array(section("positions").buffer);
    bundle.spatialIndex = section("spatial_index").buffer;
  }
  return bundle;
}
