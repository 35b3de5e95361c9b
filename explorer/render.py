"""Images for the page: decoded tensors to uint8 arrays, crisp upscaling, PNG, GIF, grids."""

from __future__ import annotations

import base64
import io

import numpy as np
import torch
from PIL import Image

from training.model import ConvVAE


@torch.inference_mode()
def decode_latents(model: ConvVAE, z: np.ndarray, label: int | None = None) -> np.ndarray:
    """(N, D) or (D,) latents -> uint8 images (N, H, W, C), C = 1 (gray) or 3 (RGB). A
    conditional model decodes every latent with LABEL, the chosen class."""
    z = np.array(z, np.float32)  # a writable copy: torch refuses read-only buffers
    if z.ndim == 1:
        z = z[None]
    device = next(model.parameters()).device
    y = None if label is None else torch.full((len(z),), int(label), device=device)
    images = model.decode(torch.from_numpy(z).to(device), y).float().cpu().numpy()  # (N, C, H, W) in [0, 1]
    return to_uint8(images)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] -> (N, H, W, C) uint8, rounded."""
    return np.clip(np.rint(np.asarray(images) * 255.0), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling of (H, W, C) so each pixel stays a crisp square."""
    if factor < 1:
        raise ValueError(f"factor must be at least 1, got {factor}")
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def _pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def png_bytes(image: np.ndarray) -> bytes:
    """(H, W, C) uint8 -> PNG file bytes."""
    buffer = io.BytesIO()
    _pil(image).save(buffer, format="PNG")
    return buffer.getvalue()


def png_data_url(image: np.ndarray) -> str:
    """(H, W, C) uint8 -> "data:image/png;base64,…", for an image inside a table cell."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def grid(images: np.ndarray, pad: int = 2, fill: int = 255) -> np.ndarray:
    """(R, K, H, W, C) uint8 -> one (R·(H+pad)-pad, K·(W+pad)-pad, C) image, rows top to bottom."""
    rows, cols, h, w, c = images.shape
    out = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad, c), fill, np.uint8)
    for r in range(rows):
        for k in range(cols):
            out[r * (h + pad) : r * (h + pad) + h, k * (w + pad) : k * (w + pad) + w] = images[r, k]
    return out


def strip(images: np.ndarray, pad: int = 2) -> np.ndarray:
    """(N, H, W, C) -> one row (H, N·(W+pad)-pad, C)."""
    return grid(images[None], pad=pad)


def gif_bytes(frames: np.ndarray, scale: int = 4, frame_ms: int = 80, bounce: bool = True) -> bytes:
    """(N, H, W, C) uint8 frames -> an animated, looping GIF, each frame upscaled by SCALE.
    With BOUNCE the animation plays forward then back, so the loop has no jump."""
    sequence = list(frames) + (list(frames[-2:0:-1]) if bounce else [])
    pictures = [_pil(upscale(f, scale)) for f in sequence]
    buffer = io.BytesIO()
    pictures[0].save(
        buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=frame_ms, loop=0, optimize=False
    )
    return buffer.getvalue()
