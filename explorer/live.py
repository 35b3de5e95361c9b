"""What the in-browser decoder needs from Python: the decoder as ONNX, the 2-D pad's planes,
and the payloads the live component receives. Plain Python; app.py only mounts the component.

The browser runs the exported decoder with onnxruntime-web (WebAssembly), so dragging a control
redraws the image on every input event with no round trip to the server.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from explorer.latent import LATENT_DECIMALS, snap_latent
from explorer.map_index import kdbush_index, map_frame, plot_positions

# The bundle the browser receives once per checkpoint: BUNDLE_MAGIC, a little-endian uint32
# header length, a JSON header (id and sections) padded to BUNDLE_ALIGN bytes, then the sections,
# each starting at a multiple of BUNDLE_ALIGN (float32 views need it). frontend/bundle.js reads
# it with these constants (frontend_script writes them there).
BUNDLE_MAGIC = b"LEXB"
BUNDLE_HEADER_START = len(BUNDLE_MAGIC) + 4  # the JSON header follows the magic and its length
BUNDLE_ALIGN = 4
# The in-browser component's source, concatenated in this order (frontend/main.js says why)
FRONTEND_FILES = (
    "runtime.js",
    "bundle.js",
    "latent.js",
    "map_search.js",
    "map_card.js",
    "map_overlay.js",
    "atlas_map.js",
    "controls.js",
    "main.js",
)
ONNX_OPSET = 17


class _Decoder(nn.Module):
    """decode() alone, as a module the exporter can trace: z (N, D) -> image (N, C, H, W) in [0, 1]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: Tensor) -> Tensor:
        return self.model.decode(z)


class _ConditionalDecoder(_Decoder):
    """A conditional model's decoder: z (N, D) and the one-hot label y (N, K) -> image."""

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        return torch.sigmoid(self.model.decoder(torch.cat([z, y], dim=1)))


def export_decoder_onnx(model: nn.Module) -> bytes:
    """The model's decoder as one ONNX file (opset 17, batch size free), input "z" (N, D)
    float32 (and, for a conditional model, "y" (N, K), the one-hot label), output "image"
    (N, C, H, W) float32 in [0, 1]. Weights are float32, so the browser reproduces torch's
    output to rounding error."""
    latent_dim, classes = model.config.latent_dim, model.config.num_classes
    buffer = io.BytesIO()
    decoder = (_ConditionalDecoder(model) if classes else _Decoder(model)).eval()
    inputs = (torch.zeros(1, latent_dim), torch.zeros(1, classes)) if classes else (torch.zeros(1, latent_dim),)
    names = ["z", "y"] if classes else ["z"]
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter is deprecated in favour of dynamo (which needs onnxscript)
        # but does this small static graph exactly, with only the `onnx` package.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            decoder,
            inputs,
            buffer,
            dynamo=False,
            input_names=names,
            output_names=["image"],
            opset_version=ONNX_OPSET,
            dynamic_axes={**{name: {0: "batch"} for name in names}, "image": {0: "batch"}},
        )
    return buffer.getvalue()


def decoder_key(model: nn.Module) -> str:
    """SHA-256 of what an exported decoder depends on: the decoder's weights (bytes, in order),
    the model's config, the opset and torch's version. A changed weight is another key."""
    digest = hashlib.sha256(json.dumps([model.config.to_dict(), ONNX_OPSET, torch.__version__]).encode())
    for name, tensor in model.decoder.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def cached_decoder_onnx(model: nn.Module, cache: Path) -> bytes:
    """export_decoder_onnx(MODEL), kept in CACHE as <decoder_key>.onnx: a freshly started
    server exports each decoder once per weights, not once per process. An unwritable cache
    is no error (the export is then redone next time)."""
    path = Path(cache) / f"{decoder_key(model)}.onnx"
    try:
        return path.read_bytes()
    except OSError:
        pass
    onnx_bytes = export_decoder_onnx(model)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.part")
        partial.write_bytes(onnx_bytes)
        partial.replace(path)  # atomic: two servers exporting at once never read half a file
    except OSError:
        pass
    return onnx_bytes


def browser_bundle(onnx_bytes: bytes) -> tuple[str, bytes]:
    """(bundle id, bytes) of the decoder as ONNX, which the browser receives once per checkpoint.
    The id is a content hash: the controls find the bundle they were told to use, and
    Streamlit sends an unchanged bundle to the browser once."""
    return pack_bundle([("onnx", onnx_bytes, None)])


def points_bundle(
    means: np.ndarray,
    embedding: np.ndarray,
    labels: np.ndarray,
    index: np.ndarray,
    names: tuple[str, ...] | None = None,
    drawn_after: np.ndarray | None = None,
) -> tuple[str, bytes]:
    """(bundle id, bytes) of one split's points for the map, sent once per model: the encoded
    means (N, D) and map positions (N, 2) as little-endian float32, the class labels and the
    positions in their split (N,) as little-endian int32, and the images' names (a JSON list of
    N strings, UTF-8) where the data set has them. The browser draws the map from it, places
    the star at z, decodes where the pointer is, searches and exports.

    For the scatterplot library (explorer.map_index): the frame (cx, cy, half, float64), the
    positions in its coordinates (N, 2) float32 and its spatial index. DRAWN_AFTER (M, 2): the
    test split's positions, which the map draws before these (the training split's bundle):
    the frame is theirs and the index covers them and these, theirs first."""
    frame = map_frame(embedding if drawn_after is None else drawn_after)
    positions = plot_positions(embedding, frame)
    shown = positions if drawn_after is None else np.concatenate([plot_positions(drawn_after, frame), positions])
    sections = [
        ("means", np.ascontiguousarray(means, "<f4").tobytes(), list(means.shape)),
        ("embedding", np.ascontiguousarray(embedding, "<f4").tobytes(), list(embedding.shape)),
        ("labels", np.ascontiguousarray(labels, "<i4").tobytes(), [len(labels)]),
        ("index", np.ascontiguousarray(index, "<i4").tobytes(), [len(index)]),
        ("frame", np.array(frame, "<f8").tobytes(), [3]),
        ("positions", positions.tobytes(), list(embedding.shape)),
        ("spatial_index", kdbush_index(shown), [len(shown)]),
    ]
    if names is not None:
        sections.append(("names", json.dumps(list(names), ensure_ascii=False).encode(), [len(names)]))
    return pack_bundle(sections)


def thumbnails_bundle(png: bytes, columns: int, count: int) -> tuple[str, bytes]:
    """(bundle id, bytes) of the atlas's thumbnail sheet (a PNG of COUNT test images, COLUMNS
    across, row by row): sent after the decoder, so that it never delays the first image."""
    return pack_bundle([("thumbnails", png, [int(count), int(columns)])])


def pack_bundle(sections: list[tuple[str, bytes, list[int] | None]]) -> tuple[str, bytes]:
    """The magic, the JSON header's length (uint32 LE), the header {id, sections: name ->
    offset, length, shape}, then each section BUNDLE_ALIGN-aligned."""
    body, table = bytearray(), {}
    for name, data, shape in sections:
        body += b"\0" * (-len(body) % BUNDLE_ALIGN)
        table[name] = {"offset": len(body), "length": len(data), "shape": shape}
        body += data
    bundle_id = hashlib.sha256(bytes(body)).hexdigest()[:16]
    header = json.dumps({"id": bundle_id, "sections": table}).encode()
    header += b" " * (-len(header) % BUNDLE_ALIGN)
    return bundle_id, BUNDLE_MAGIC + struct.pack("<I", len(header)) + header + bytes(body)


def frontend_script(folder: Path) -> str:
    """The live decoder component's JavaScript: SHARED (the bundle's layout and the latent grid,
    from this module's constants), then FOLDER's FRONTEND_FILES in order, as one ES module."""
    shared = {
        "bundle": {"magic": BUNDLE_MAGIC.decode(), "headerStart": BUNDLE_HEADER_START, "align": BUNDLE_ALIGN},
        "latentDecimals": LATENT_DECIMALS,
    }
    parts = [f"const SHARED = {json.dumps(shared)};\n"]
    parts += [f"// ---- frontend/{name}\n{(folder / name).read_text()}" for name in FRONTEND_FILES]
    return "\n".join(parts)


@dataclass(frozen=True)
class PadPlane:
    """A plane through latent space for the 2-D pad. Moving the pad's point to (a, b) sets
    z ← z + (a − a₀)·u + (b − b₀)·v, where (a₀, b₀) = coordinates(z): the components along u
    and v are replaced and every other direction of z is kept (frontend/controls.js does this).

    origin: (D,) point the coordinates are measured from; u, v: (D,) orthonormal directions;
    a_range, b_range: the pad's extent along u and v in latent units."""

    name: str
    origin: np.ndarray
    u: np.ndarray
    v: np.ndarray
    a_range: tuple[float, float]
    b_range: tuple[float, float]

    def coordinates(self, z: np.ndarray) -> tuple[float, float]:
        """(a, b) of z on this plane."""
        offset = np.asarray(z, np.float64) - self.origin
        return float(offset @ self.u), float(offset @ self.v)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "origin": self.origin.tolist(),
            "u": self.u.tolist(),
            "v": self.v.tolist(),
            "a_range": list(self.a_range),
            "b_range": list(self.b_range),
        }


def principal_plane(means: np.ndarray, spread: float = 3.0) -> PadPlane:
    """The plane of the two principal directions of the encoded means (N, D), centred on their
    mean, spanning ±spread standard deviations along each: the manifold's widest view."""
    means = np.asarray(means, np.float64)
    if means.ndim != 2 or means.shape[0] < 3 or means.shape[1] < 2:
        raise ValueError(f"need at least 3 means of dimension ≥ 2, got shape {means.shape}")
    centre = means.mean(axis=0)
    _, singular, directions = np.linalg.svd(means - centre, full_matrices=False)
    sd = singular[:2] / np.sqrt(means.shape[0] - 1)
    u, v = directions[0], directions[1]
    # A sign convention, so the pad does not flip between runs of the same data.
    u, v = (u if u[np.argmax(np.abs(u))] > 0 else -u), (v if v[np.argmax(np.abs(v))] > 0 else -v)
    return PadPlane("PC1 × PC2", centre, u, v, (-spread * sd[0], spread * sd[0]), (-spread * sd[1], spread * sd[1]))


def live_payload(
    bundle_id: str,
    image_shape: tuple[int, int, int],
    latent: np.ndarray,
    revision: int,
    low: np.ndarray,
    high: np.ndarray,
    principal: dict | None,
    asset_url: str,
    bundle_url: str,
    image_pixels: bytes | None = None,
    num_classes: int = 0,
    label: int = 0,
    unused: list[int] | None = None,
    caption: str = "",
    compare: dict | None = None,
    concept: dict | None = None,
    points_id: str | None = None,
) -> dict:
    """The JSON the live controls receive on each run. `revision` changes only when Python sets
    the latent (random, origin, map click), so the browser moves its controls then and keeps
    the user's own position otherwise. `image_pixels`, the server's decode of `latent` (8-bit
    C·H·W values, sent as base64), is drawn until the browser's decoder has started: at once,
    where a PNG would wait for its decoding behind the map's first draw. `unused`: the 0-based
    latents the model leaves unused (explorer.latent.inactive_dimensions), whose sliders are dimmed.
    `caption` names the decoded image; `compare`, {"bundle_id", "caption", "image"} of a second
    decoder of the same latent space (compare_payload), decoded beside it on every input event.
    `concept`: explorer.concept.Concept.to_json(), the concept slider's direction; `points_id`:
    the bundle of the atlas's test points (points_bundle): the star's place on the map and
    the concept slider's strip. Bundles are fetched from `bundle_url` + id (ui/bundles.py)."""
    channels, height, width = image_shape
    return {
        "bundle_id": bundle_id,
        "shape": [int(channels), int(height), int(width)],
        "latent": [round(float(x), 4) for x in latent],
        "revision": int(revision),
        "low": [float(x) for x in low],
        "high": [float(x) for x in high],
        "principal": principal,  # PadPlane.to_json() or None
        "asset_url": asset_url,
        "bundle_url": bundle_url,
        "num_classes": int(num_classes),  # > 0: a conditional model, decoded with the one-hot `label`
        "label": int(label),
        "unused": [int(i) for i in unused or []],
        "image": _base64(image_pixels),
        "caption": caption,
        "compare": compare,
        "concept": concept,
        "points_id": points_id,
    }


def compare_payload(bundle_id: str, caption: str, image_pixels: bytes | None = None) -> dict:
    """live_payload's `compare`: the second decoder's bundle id, its caption and the server's
    decode of the latent with it (8-bit C·H·W values), drawn until the browser's runs."""
    return {"bundle_id": bundle_id, "caption": caption, "image": _base64(image_pixels)}


def _base64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def latent_from_browser(value: object, low: np.ndarray, high: np.ndarray) -> np.ndarray | None:
    """The latent the browser sent back, checked: a list of len(low) finite numbers, clamped to
    [low, high] and rounded to the controls' 0.01 step. None for anything else (the page keeps
    its latent: the browser is not trusted to send well-formed values)."""
    if not isinstance(value, (list, tuple)) or len(value) != len(low):
        return None
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
        return None
    z = np.asarray(value, np.float64)
    if not np.all(np.isfinite(z)):
        return None
    return snap_latent(z, low, high).astype(np.float32)
