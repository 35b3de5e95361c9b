"""Load a checkpoint's precomputed atlas and place new latents on its map without UMAP."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file

from training.atlas import ATLAS


@dataclass(frozen=True)
class Atlas:
    means: np.ndarray  # (N, D) float32, encoder means of the test set
    labels: np.ndarray  # (N,) int64
    embedding: np.ndarray  # (N, 2) float32, UMAP coordinates
    index: np.ndarray  # (N,) int64, position in the test set
    anomaly: np.ndarray | None = None  # (N,) float32, each image's anomaly score (nats, "complexity"), if built

    def __len__(self) -> int:
        return len(self.labels)


class AtlasError(Exception):
    """The atlas file exists but cannot be used; one sentence."""


def load_atlas(folder: str | os.PathLike, latent_dim: int) -> Atlas | None:
    """The atlas of a checkpoint folder, or None when it has none (run `python -m training
    atlas`). Checks that its arrays agree with each other and with LATENT_DIM."""
    path = Path(folder) / ATLAS
    if not path.is_file():
        return None
    try:
        arrays = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise AtlasError(f"{path} is not a valid safetensors file ({e}).") from e
    try:
        atlas = Atlas(
            means=arrays["means"].astype(np.float32),
            labels=arrays["labels"].astype(np.int64),
            embedding=arrays["embedding"].astype(np.float32),
            index=arrays["index"].astype(np.int64),
            anomaly=arrays["anomaly"].astype(np.float32) if "anomaly" in arrays else None,
        )
    except KeyError as e:
        raise AtlasError(f"{path} lacks the array {e}; rebuild it with `python -m training atlas`.") from e
    n = len(atlas.labels)
    if atlas.means.shape != (n, latent_dim) or atlas.embedding.shape != (n, 2) or atlas.index.shape != (n,):
        raise AtlasError(f"{path} does not match the model (latent size {latent_dim}); rebuild it.")
    if atlas.anomaly is not None and atlas.anomaly.shape != (n,):
        raise AtlasError(f"{path} does not match the model (latent size {latent_dim}); rebuild it.")
    if not (np.isfinite(atlas.means).all() and np.isfinite(atlas.embedding).all()):
        raise AtlasError(f"{path} holds NaN or infinite values; rebuild it.")
    return atlas


def describe_point(atlas: Atlas, row: int, class_names: list[str]) -> str:
    """'test image #0 (7)': the test-set position of the atlas's row ROW and its class, named
    by CLASS_NAMES where the checkpoint has them, else by number."""
    label = int(atlas.labels[row])
    name = class_names[label] if 0 <= label < len(class_names) else str(label)
    return f"test image #{int(atlas.index[row])} ({name})"


def place_on_map(atlas: Atlas, z: np.ndarray, k: int = 8) -> tuple[float, float]:
    """Map position of a latent Z (D,) without running UMAP: the inverse-distance-weighted
    mean of the UMAP positions of its K nearest encoded test points (in latent space).
    Exact on a point of the atlas. O(N·D) per call (docs/benchmarks.md times it)."""
    d2 = np.sum((atlas.means - np.asarray(z, np.float32)) ** 2, axis=1)
    k = min(k, len(d2))
    nearest = np.argpartition(d2, k - 1)[:k]
    distances = np.sqrt(d2[nearest])
    if distances.min() < 1e-6:
        x, y = atlas.embedding[nearest[np.argmin(distances)]]
        return float(x), float(y)
    weights = 1.0 / distances**2
    x, y = (weights[:, None] * atlas.embedding[nearest]).sum(axis=0) / weights.sum()
    return float(x), float(y)
