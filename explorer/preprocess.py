"""A user's image (a drawing, an upload) made into the model's input, as its data set's images
were made: for MNIST-like models, white ink on black, the ink scaled into a 20 × 20 box and
centred by its centre of mass in 28 × 28 (LeCun et al.'s MNIST recipe); for others, the
largest centred square resized, as `--dataset folder` does."""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np
from PIL import Image

from training.data import DataError
from training.images import open_image, square_resize

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # also server.maxUploadSize (MB) in .streamlit/config.toml
INK_BOX = 20  # MNIST's digits fit a 20 × 20 box inside the 28 × 28 image


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
        return base64.b64decode(url[len(prefix):], validate=True)
    except (binascii.Error, ValueError):
        raise DataError("the drawing arrived damaged; draw it again.") from None


def mnist_like(gray: np.ndarray) -> np.ndarray | None:
    """(H, W) gray values in [0, 1], any size, light or dark ink -> (28, 28) float32 in [0, 1],
    white ink on black, scaled into 20 × 20 and centred by mass; None when there is no ink."""
    g = np.asarray(gray, np.float32)
    border = np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])
    if np.median(border) > 0.5:  # dark ink on light paper (a scan, a photo): make it MNIST's way
        g, border = 1.0 - g, 1.0 - border
    g = np.clip(g - np.median(border), 0, None)  # the paper's level is black
    if g.max() < 0.05:
        return None
    g /= g.max()
    rows, cols = np.nonzero(g > 0.1)
    g = g[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    scale = INK_BOX / max(g.shape)
    height, width = max(1, round(g.shape[0] * scale)), max(1, round(g.shape[1] * scale))
    ink = np.asarray(Image.fromarray(g, mode="F").resize((width, height), Image.Resampling.LANCZOS), np.float32)
    ink = np.clip(ink, 0, 1)
    total = ink.sum()
    com_row = (ink.sum(axis=1) * np.arange(height)).sum() / total
    com_col = (ink.sum(axis=0) * np.arange(width)).sum() / total
    top = int(np.clip(round(14 - com_row), 0, 28 - height))
    left = int(np.clip(round(14 - com_col), 0, 28 - width))
    out = np.zeros((28, 28), np.float32)
    out[top:top + height, left:left + width] = ink
    return out


def model_input(image: Image.Image, channels: int, size: int, mnist: bool) -> np.ndarray | None:
    """A decoded image -> the model's input (C, size, size) float32 in [0, 1]: MNIST's recipe
    for gray 28 × 28 digit models, else the centred square resized. None: no ink found."""
    if mnist and channels == 1 and size == 28:
        digit = mnist_like(np.asarray(image.convert("L"), np.float32) / 255.0)
        return None if digit is None else digit[None]
    pixels = np.asarray(square_resize(image, size), np.float32) / 255.0
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
