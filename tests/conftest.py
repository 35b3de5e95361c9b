"""Shared fixtures: tiny synthetic IDX data sets, the real MNIST folder when present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from training.data import write_idx

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "checkpoints" / "mnist-z8"


def real_mnist_dir() -> Path | None:
    """../shared/data/mnist beside the project (present in CI), or $LATENT_EXPLORER_DATA."""
    for candidate in (os.environ.get("LATENT_EXPLORER_DATA"), ROOT.parent / "shared" / "data" / "mnist"):
        if candidate and (Path(candidate) / "t10k-images-idx3-ubyte.gz").is_file():
            return Path(candidate)
    return None


def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 28, 28) uint8 images of a bright square whose position encodes the label 0..3,
    so a tiny VAE can learn them in a few steps."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=n).astype(np.uint8)
    images = np.zeros((n, 28, 28), np.uint8)
    for i, label in enumerate(labels):
        r, c = divmod(int(label), 2)
        images[i, 4 + 12 * r: 12 + 12 * r, 4 + 12 * c: 12 + 12 * c] = 255
    images = np.clip(images + rng.integers(0, 30, size=images.shape), 0, 255).astype(np.uint8)
    return images, labels


def write_tiny_mnist(folder: Path) -> Path:
    """FOLDER, created, with the four MNIST file names holding a tiny synthetic data set: 256
    training images (seed 1), 64 test images (seed 2)."""
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = synthetic_digits(256, seed=1)
    test_x, test_y = synthetic_digits(64, seed=2)
    write_idx(folder / "train-images-idx3-ubyte.gz", train_x)
    write_idx(folder / "train-labels-idx1-ubyte.gz", train_y)
    write_idx(folder / "t10k-images-idx3-ubyte", test_x)  # one raw file: both forms are read
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", test_y)
    return folder


@pytest.fixture
def tiny_mnist(tmp_path: Path) -> Path:
    return write_tiny_mnist(tmp_path / "data")


@pytest.fixture
def mnist_dir() -> Path:
    folder = real_mnist_dir()
    if folder is None:
        pytest.skip("real MNIST is not beside the project (../shared/data/mnist)")
    return folder
