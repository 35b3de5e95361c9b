"""Load a checkpoint's precomputed atlas and place new latents on its map without UMAP."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open

from training.atlas import ATLAS
from training.images import VARIANT_MARK

# Unicode's names of the five skin-tone modifiers, by code point (the emoji folder's variants)
SKIN_TONES = {"1F3FB": "light", "1F3FC": "medium-light", "1F3FD": "medium", "1F3FE": "medium-dark", "1F3FF": "dark"}


@dataclass(frozen=True)
class Atlas:
    means: np.ndarray  # (N, D) float32, encoder means of the test set
    labels: np.ndarray  # (N,) int64
    embedding: np.ndarray  # (N, 2) float32, UMAP coordinates
    index: np.ndarray  # (N,) int64, position in the test set
    anomaly: np.ndarray | None = None  # (N,) float32, each image's anomaly score (nats, "complexity"), if built
    thumbnails: bytes | None = None  # one PNG: the N test images as tiles, row by row, thumbnail_columns across
    thumbnail_columns: int = 0
    train_means: np.ndarray | None = None  # (M, D) float32, encoder means of the training split, in its order
    train_embedding: np.ndarray | None = None  # (M, 2) float32, their UMAP coordinates (one layout with the test set's)
    train_labels: np.ndarray | None = None  # (M,) int64, their classes
    names: tuple[str, ...] | None = None  # (N,) the test images' names (an image folder's file stems)

    def __post_init__(self) -> None:
        # one Atlas is shared by every session of the page: its arrays cannot be written
        arrays = (self.means, self.labels, self.embedding, self.index, self.anomaly, self.train_means)
        for array in (*arrays, self.train_embedding, self.train_labels):
            if array is not None:
                array.setflags(write=False)

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
        with safe_open(str(path), framework="numpy") as f:
            arrays = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 - safe_open has no iterator
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise AtlasError(f"{path} is not a valid safetensors file ({e}).") from e
    try:
        names = json.loads(metadata["names"]) if "names" in metadata else None
        atlas = Atlas(
            means=arrays["means"].astype(np.float32),
            labels=arrays["labels"].astype(np.int64),
            embedding=arrays["embedding"].astype(np.float32),
            index=arrays["index"].astype(np.int64),
            anomaly=arrays["anomaly"].astype(np.float32) if "anomaly" in arrays else None,
            thumbnails=arrays["thumbnails"].astype(np.uint8).tobytes() if "thumbnails" in arrays else None,
            thumbnail_columns=int(metadata.get("thumbnail_columns", 0)),
            train_means=arrays["train_means"].astype(np.float32) if "train_means" in arrays else None,
            train_embedding=arrays["train_embedding"].astype(np.float32) if "train_embedding" in arrays else None,
            train_labels=arrays["train_labels"].astype(np.int64) if "train_labels" in arrays else None,
            names=None if names is None else tuple(str(name) for name in names),
        )
    except KeyError as e:
        raise AtlasError(f"{path} lacks the array {e}; rebuild it with `python -m training atlas`.") from e
    except (ValueError, TypeError) as e:  # metadata that is not what the atlas command writes
        raise AtlasError(f"{path} has unreadable metadata ({e}); rebuild it.") from e
    check_atlas(atlas, path, latent_dim)
    return atlas


def check_atlas(atlas: Atlas, path: Path, latent_dim: int) -> None:
    """Raise AtlasError unless ATLAS's arrays agree with each other and with LATENT_DIM."""
    n = len(atlas.labels)
    mismatch = atlas.means.shape != (n, latent_dim) or atlas.embedding.shape != (n, 2) or atlas.index.shape != (n,)
    mismatch |= atlas.anomaly is not None and atlas.anomaly.shape != (n,)
    train = atlas.train_means
    mismatch |= train is not None and (train.ndim != 2 or train.shape[1] != latent_dim)
    m = None if train is None else len(train)
    mismatch |= atlas.train_embedding is not None and (m is None or atlas.train_embedding.shape != (m, 2))
    mismatch |= atlas.train_labels is not None and (m is None or atlas.train_labels.shape != (m,))
    mismatch |= (atlas.train_embedding is None) != (atlas.train_labels is None)
    mismatch |= atlas.names is not None and len(atlas.names) != n
    mismatch |= atlas.thumbnails is not None and atlas.thumbnail_columns < 1
    if mismatch:
        raise AtlasError(f"{path} does not match the model (latent size {latent_dim}); rebuild it.")
    finite = np.isfinite(atlas.means).all() and np.isfinite(atlas.embedding).all()
    finite &= train is None or bool(np.isfinite(train).all())
    finite &= atlas.train_embedding is None or bool(np.isfinite(atlas.train_embedding).all())
    if not finite:
        raise AtlasError(f"{path} holds NaN or infinite values; rebuild it.")


def display_name(name: str) -> str:
    """An image's name as a reader wants it: 'wave~1F3FB' -> 'wave, light skin tone',
    'couple~1F3FF-1F3FB' -> 'couple, dark and light skin tones'; another variant stays 'name (variant)'."""
    base, mark, variant = name.partition(VARIANT_MARK)
    if not mark:
        return name
    tones = [SKIN_TONES.get(code.upper()) for code in variant.split("-")]
    if None in tones:
        return f"{base} ({variant})"
    return f"{base}, {' and '.join(tones)} skin tone{'s' if len(tones) > 1 else ''}"


def describe_point(atlas: Atlas, row: int, class_names: list[str]) -> str:
    """'test image #0 (7)': the test-set position of the atlas's row ROW and its class, named
    by CLASS_NAMES where the checkpoint has them, else by number; a named image adds its name
    ('test image #4, wave (People & Body)')."""
    label = int(atlas.labels[row])
    name = class_names[label] if 0 <= label < len(class_names) else str(label)
    own = f", {display_name(atlas.names[row])}" if atlas.names is not None else ""
    return f"test image #{int(atlas.index[row])}{own} ({name})"


def nearest_training(atlas: Atlas, z: np.ndarray, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(rows of the training split (k,), their Euclidean distances in latent space (k,)),
    nearest first: the training images whose encoder means are nearest Z (D,)."""
    if atlas.train_means is None:
        raise ValueError("this atlas has no training means; rebuild it with `python -m training atlas`")
    d2 = np.sum((atlas.train_means - np.asarray(z, np.float32)) ** 2, axis=1)
    k = min(k, len(d2))
    nearest = np.argpartition(d2, k - 1)[:k]
    nearest = nearest[np.lexsort((nearest, d2[nearest]))]  # by distance, ties by row
    return nearest, np.sqrt(d2[nearest])


def nearest_class(atlas: Atlas, z: np.ndarray, k: int = 5) -> tuple[int, int]:
    """(the class most of the K test images whose means are nearest Z (D,) have, how many of the K
    have it): where the map places Z, by a vote of its neighbours; ties go to the nearer class."""
    d2 = np.sum((atlas.means - np.asarray(z, np.float32)) ** 2, axis=1)
    k = min(k, len(d2))
    nearest = np.argpartition(d2, k - 1)[:k]
    nearest = nearest[np.argsort(d2[nearest], kind="stable")]
    labels = atlas.labels[nearest].tolist()
    votes = {label: labels.count(label) for label in labels}
    best = max(votes.values())
    return next(label for label in labels if votes[label] == best), best


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
