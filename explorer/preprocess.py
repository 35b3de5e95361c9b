"""A user's image as the page receives it (an upload's bytes, the sketch pad's data URL),
checked and decoded; training.images.model_input then makes it the model's input."""

from __future__ import annotations

import base64
import binascii
import io

from PIL import Image

from training.data import DataError
from training.images import open_image

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # also server.maxUploadSize (MB) in .streamlit/config.toml


def read_image_bytes(data: bytes, name: str, channels: int) -> Image.Image:
    """Bytes of a PNG or JPEG (an upload, a drawing), checked by size in bytes, then by
    content and pixel count before decoding (training.images.open_image). Raises DataError."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise DataError(f"{name}: is {len(data) / 1e6:.1f} MB, over the {MAX_UPLOAD_BYTES // (1024 * 1024)} MB limit.")
    if not data:
        raise DataError(f"{name}: is empty (0 bytes).")
    return open_image(io.BytesIO(data), name, "L" if channels == 1 else "RGB")


def data_url_bytes(url: object) -> bytes:
    """The bytes of a "data:image/png;base64,…" URL (the sketch pad sends one). Raises DataError."""
    prefix = "data:image/png;base64,"
    if not isinstance(url, str) or not url.startswith(prefix):
        raise DataError("the drawing did not arrive as a PNG; draw it again.")
    try:
        return base64.b64decode(url[len(prefix) :], validate=True)
    except (binascii.Error, ValueError):
        raise DataError("the drawing arrived damaged; draw it again.") from None
