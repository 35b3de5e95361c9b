"""The mixture sampler fitted to the aggregate posterior (training/sampler.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import training
from tests.conftest import ENV, ROOT, TINY_FLAGS
from training.checkpoint import CheckpointError
from training.sampler import SAMPLER, fit_mixture, load_sampler, save_sampler


def three_clusters(n: int = 3000) -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = np.array([[-4.0, 0, 0], [0, 4.0, 0], [4.0, 0, 1.0]])
    return centres[rng.integers(0, 3, n)] + 0.3 * rng.standard_normal((n, 3))


def test_the_mixture_samples_where_the_data_are(tmp_path: Path) -> None:
    sampler = fit_mixture(three_clusters(), components=3)
    z = sampler.sample(np.random.default_rng(1), 3000)
    assert z.shape == (3000, 3) and z.dtype == np.float32
    # every sample lies near one of the three centres, unlike N(0, I) draws would
    centres = np.array([[-4.0, 0, 0], [0, 4.0, 0], [4.0, 0, 1.0]])
    nearest = np.linalg.norm(z[:, None] - centres[None], axis=2).min(axis=1)
    assert np.quantile(nearest, 0.99) < 1.5
    save_sampler(tmp_path, sampler)
    loaded = load_sampler(tmp_path, 3)
    assert np.array_equal(loaded.sample(np.random.default_rng(2), 5), sampler.sample(np.random.default_rng(2), 5))
    assert load_sampler(tmp_path / "none", 3) is None


def test_a_broken_sampler_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    save_sampler(tmp_path, fit_mixture(three_clusters(), components=2))
    with pytest.raises(CheckpointError, match="latent size 4"):
        load_sampler(tmp_path, 4)
    (tmp_path / SAMPLER).write_bytes(b"\x80\x04 a pickle")
    with pytest.raises(CheckpointError, match="not a valid sampler file"):
        load_sampler(tmp_path, 3)


def test_cli_fits_a_sampler_into_the_checkpoint(tiny_mnist: Path, tmp_path: Path) -> None:
    run = lambda *args: subprocess.run(
        [sys.executable, "-m", "training", *args],
        cwd=ROOT,  # noqa: E731
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    result = run(
        "train",
        "--out",
        str(tmp_path / "run"),
        "--data-dir",
        str(tiny_mnist),
        "--epochs",
        "1",
        "--batch-size",
        "32",
        *TINY_FLAGS,
    )
    assert result.returncode == 0, result.stderr
    result = run("sampler", str(tmp_path / "run"), "--data-dir", str(tiny_mnist), "--components", "4")
    assert result.returncode == 0, result.stderr
    sampler = load_sampler(tmp_path / "run", 8)
    assert len(sampler.weights) == 4
    model = training.load_model(tmp_path / "run")  # the folder still loads as a model
    assert model.config.latent_dim == 8
