"""The nearest training images (explorer/neighbours.py): the images of a checkpoint's training
split, found as training found them, in the order of the atlas's training means."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from explorer.neighbours import find_training_images
from tests.conftest import make_folder, synthetic_digits, write_tiny_mnist
from training.data import DataError
from training.images import load_image_folder


def test_an_idx_sets_training_images_are_its_training_file_in_order(tmp_path: Path) -> None:
    folder = write_tiny_mnist(tmp_path / "mnist")
    found = find_training_images({"name": "mnist"}, (1, 28, 28), folder)
    expected, _ = synthetic_digits(256, seed=1)
    assert len(found) == 256
    images = found.images(np.array([3, 0, 255]))
    assert images.shape == (3, 1, 28, 28) and images.dtype == np.float32
    np.testing.assert_array_equal(np.round(images[:, 0] * 255).astype(np.uint8), expected[[3, 0, 255]])
    with pytest.raises(DataError, match="is not in"):
        find_training_images({"name": "mnist"}, (1, 28, 28), tmp_path / "empty")


def test_a_folders_training_images_follow_its_split(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    train, test, _ = load_image_folder(folder, 16, 3)
    record = {"name": "folder", "path": str(folder), "train_images": len(train), "test_images": len(test)}
    found = find_training_images(record, (3, 16, 16))
    assert len(found) == len(train)
    np.testing.assert_allclose(found.images(np.array([0, 5])), train.images[[0, 5]].numpy(), atol=1e-6)
    (folder / "extra.png").write_bytes((folder / next(folder.rglob("*.png")).relative_to(folder)).read_bytes())
    with pytest.raises(DataError, match="not the 24 it was trained on"):
        find_training_images(record, (3, 16, 16))
