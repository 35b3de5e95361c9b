"""The training images nearest a latent: whether a sample copies one image or composes many.
The atlas holds the training split's encoder means (training/atlas.py); the images themselves
are read from the data set when first asked for, never bundled: an IDX set's training file (read
once), or an image folder's files, only those shown."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data import FOLDER, DataError, locate_files, read_idx
from training.images import find_images, load_image, split_rows


@dataclass(frozen=True)
class TrainingImages:
    """Where a checkpoint's training images are: all of an IDX set's (pixels (M, H, W) uint8)
    or an image folder's training files, in the training split's order (files)."""

    image_shape: tuple[int, int, int]  # (C, H, W)
    pixels: np.ndarray | None = None
    files: tuple[Path, ...] | None = None

    def __len__(self) -> int:
        return len(self.pixels) if self.pixels is not None else len(self.files)

    def images(self, rows: np.ndarray) -> np.ndarray:
        """(k, C, H, W) float32 in [0, 1]: the training split's images at ROWS."""
        channels, size, _ = self.image_shape
        if self.pixels is not None:
            picked = self.pixels[np.asarray(rows)]
            return picked.reshape(len(picked), channels, size, size).astype(np.float32) / 255.0
        loaded = [load_image(self.files[int(row)], size, channels) for row in rows]
        return np.stack(loaded).transpose(0, 3, 1, 2).astype(np.float32) / 255.0


def find_training_images(
    dataset: dict, image_shape: tuple[int, int, int], data_dir: str | os.PathLike | None = None
) -> TrainingImages:
    """The training images of a checkpoint's DATASET record (config.json's "dataset"), found as
    the training commands find them, never downloaded. Raises DataError when they are not here."""
    if dataset["name"] == FOLDER:
        folder = data_dir or dataset.get("path")
        if not folder:
            raise DataError("the checkpoint does not say which folder it was trained on.")
        files = find_images(folder)[0]
        recorded = dataset.get("train_images", 0) + dataset.get("test_images", 0)
        if recorded and len(files) != recorded:
            raise DataError(f"its image folder now holds {len(files)} images, not the {recorded} it was trained on.")
        train_rows, _ = split_rows(files, dataset.get("split_seed", 0))
        return TrainingImages(image_shape, files=tuple(files[row] for row in train_rows))
    paths = locate_files(dataset["name"], data_dir, download=False)
    pixels = read_idx(paths["train-images"])
    if pixels.ndim != 3 or pixels.shape[1:] != image_shape[1:]:
        raise DataError(f"{paths['train-images'].name} does not hold {image_shape[1]}×{image_shape[2]} images.")
    return TrainingImages(image_shape, pixels=pixels)
