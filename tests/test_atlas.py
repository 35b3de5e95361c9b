"""`python -m training atlas`: the test set encoded and laid out by UMAP, into the checkpoint
folder; umap-learn here, RAPIDS cuML where it is installed beside a GPU."""

from __future__ import annotations

import io
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

import training
from explorer.atlas import load_atlas, nearest_training
from tests.conftest import ENV, ROOT, TINY_FLAGS, synthetic_digits, write_tiny_mnist
from training.atlas import (
    ATLAS,
    UMAP_PARAMETERS,
    build_atlas,
    umap_backend,
    umap_embedding,
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data folder, checkpoint) of a tiny model trained on the synthetic squares."""
    folder = write_tiny_mnist(tmp_path_factory.mktemp("data"))
    out = tmp_path_factory.mktemp("runs") / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            "train",
            "--out",
            str(out),
            "--data-dir",
            str(folder),
            "--epochs",
            "4",
            "--batch-size",
            "32",
            *TINY_FLAGS,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    assert result.returncode == 0, result.stderr
    return folder, out


def umap_metadata(checkpoint: Path) -> str:
    with safe_open(str(checkpoint / ATLAS), "pt") as f:
        return f.metadata()["umap"]


def test_atlas_command_encodes_the_test_set_and_maps_it(tiny_run: tuple[Path, Path]) -> None:
    folder, out = tiny_run
    result = subprocess.run(
        [sys.executable, "-m", "training", "atlas", str(out), "--data-dir", str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    assert result.returncode == 0, result.stderr
    assert f"wrote {out / ATLAS}" in result.stdout
    atlas = load_atlas(out, 8)
    assert atlas is not None and len(atlas) == 64
    images, labels = synthetic_digits(64, seed=2)
    np.testing.assert_array_equal(atlas.labels, labels)
    np.testing.assert_array_equal(atlas.index, np.arange(64))
    model = training.load_model(out)
    with torch.no_grad():
        mu, _ = model.encode(torch.from_numpy(images).float().div(255).unsqueeze(1))
    np.testing.assert_allclose(atlas.means, mu.numpy(), atol=1e-4)
    assert atlas.embedding.shape == (64, 2) and np.isfinite(atlas.embedding).all()
    # the map keeps the encoder's classes apart: a point's nearest neighbour on it mostly
    # shows the same square
    distances = np.linalg.norm(atlas.embedding[:, None] - atlas.embedding[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    assert (atlas.labels[distances.argmin(axis=1)] == atlas.labels).mean() >= 0.9
    assert umap_metadata(out).startswith("umap-learn: n_components=2, n_neighbors=15")
    # beside the map: every test image in the thumbnail sheet, tile by tile, and the training
    # split's encoder means for the nearest training images
    sheet = np.asarray(Image.open(io.BytesIO(atlas.thumbnails)))
    columns = atlas.thumbnail_columns
    assert columns == 8 and sheet.shape == (8 * 28, 8 * 28)
    for row in (0, 9, 63):
        tile = sheet[(row // columns) * 28 : (row // columns + 1) * 28, (row % columns) * 28 : (row % columns + 1) * 28]
        np.testing.assert_array_equal(tile, images[row])
    train_images, _ = synthetic_digits(256, seed=1)
    with torch.no_grad():
        train_mu, _ = model.encode(torch.from_numpy(train_images).float().div(255).unsqueeze(1))
    assert atlas.train_means.shape == (256, 8)
    np.testing.assert_allclose(atlas.train_means, train_mu.numpy(), atol=1e-4)
    rows, distances = nearest_training(atlas, atlas.means[5], k=8)
    brute = np.linalg.norm(atlas.train_means - atlas.means[5], axis=1)
    assert rows[0] == brute.argmin() and np.all(np.diff(distances) >= 0)
    np.testing.assert_allclose(distances, np.sort(brute)[:8], rtol=1e-5)
    # the training split on the same map: its points fall among the test points of their class
    _, train_labels = synthetic_digits(256, seed=1)
    np.testing.assert_array_equal(atlas.train_labels, train_labels)
    assert atlas.train_embedding.shape == (256, 2) and np.isfinite(atlas.train_embedding).all()
    to_test = np.linalg.norm(atlas.train_embedding[:, None] - atlas.embedding[None], axis=-1)
    assert (atlas.labels[to_test.argmin(axis=1)] == train_labels).mean() >= 0.9


def copied_checkpoint(out: Path, tmp_path: Path) -> Path:
    """A copy of the checkpoint OUT's model alone (no atlas), under TMP_PATH."""
    checkpoint = tmp_path / "copy"
    checkpoint.mkdir()
    for name in ("config.json", "model.safetensors"):
        (checkpoint / name).write_bytes((out / name).read_bytes())
    return checkpoint


def test_an_atlas_of_the_test_set_alone_leaves_the_training_split_off_the_map(
    tiny_run: tuple[Path, Path], tmp_path: Path
) -> None:
    folder, out = tiny_run
    checkpoint = copied_checkpoint(out, tmp_path)
    command = [sys.executable, "-m", "training", "atlas", str(checkpoint), "--data-dir", str(folder), "--test-only"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, result.stderr
    atlas = load_atlas(checkpoint, 8)
    assert atlas.train_means.shape == (256, 8)  # still there for the nearest training images
    assert atlas.train_embedding is None and atlas.train_labels is None


class StandInUMAP:
    """cuML's estimator as the atlas calls it, recording what it was given."""

    calls: list[dict] = []

    def __init__(self, **parameters: object) -> None:
        self.parameters = parameters

    def fit_transform(self, points: np.ndarray) -> np.ndarray:
        StandInUMAP.calls.append({"parameters": self.parameters, "shape": points.shape})
        return np.stack([points[:, 0], points[:, 1] * 2], axis=1).astype(np.float64)


@pytest.fixture
def cuml_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    package, manifold = types.ModuleType("cuml"), types.ModuleType("cuml.manifold")
    manifold.UMAP = StandInUMAP
    package.manifold = manifold
    monkeypatch.setitem(sys.modules, "cuml", package)
    monkeypatch.setitem(sys.modules, "cuml.manifold", manifold)
    StandInUMAP.calls = []


def test_umap_backend_needs_cuml_and_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cuml", None)  # importing it raises ImportError
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert umap_backend() == "umap-learn"


def test_cuml_is_used_when_installed_beside_a_gpu(
    cuml_installed: None, monkeypatch: pytest.MonkeyPatch, tiny_run: tuple[Path, Path], tmp_path: Path
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert umap_backend() == "umap-learn"  # cuML cannot run without a GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert umap_backend() == "cuml"
    points = np.random.default_rng(0).normal(size=(30, 8)).astype(np.float32)
    embedding = umap_embedding(points, seed=3)
    assert embedding.dtype == np.float32 and embedding.shape == (30, 2)
    np.testing.assert_array_equal(embedding[:, 1], points[:, 1] * 2)
    assert StandInUMAP.calls[-1]["parameters"] == {**UMAP_PARAMETERS, "random_state": 3}
    # the whole atlas through it, on the CPU (the stand-in needs no GPU), recorded as cuML's
    folder, out = tiny_run
    checkpoint = copied_checkpoint(out, tmp_path)
    build_atlas(checkpoint, data_dir=folder)  # the model on the CPU, as build_atlas loads it
    atlas = load_atlas(checkpoint, 8)
    np.testing.assert_array_equal(atlas.embedding[:, 0], atlas.means[:, 0])
    assert StandInUMAP.calls[-1]["shape"] == (64 + 256, 8)  # one layout of the test and training means
    np.testing.assert_array_equal(atlas.train_embedding[:, 0], atlas.train_means[:, 0])
    assert umap_metadata(checkpoint).startswith("cuml: n_components=2, n_neighbors=15")
