"""Anomaly scores and AUROC (training/anomaly.py), and `python -m training anomaly`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import training
from training.anomaly import auroc, negative_elbo
from training.model import ConvVAE, ModelConfig
from tests.test_train import ENV, ROOT, TINY_FLAGS


def brute_force_auroc(a: np.ndarray, b: np.ndarray) -> float:
    wins = sum((y > x) + 0.5 * (y == x) for x in a for y in b)
    return wins / (len(a) * len(b))


def test_auroc_is_the_probability_an_anomaly_outscores_a_normal_image() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(1.0, size=40)
    assert auroc(a, b) == pytest.approx(brute_force_auroc(a, b))
    ties_a, ties_b = np.array([1, 2, 2, 3.0]), np.array([2, 2, 4.0])
    assert auroc(ties_a, ties_b) == pytest.approx(brute_force_auroc(ties_a, ties_b))
    assert auroc([0, 1], [2, 3]) == 1.0 and auroc([2, 3], [0, 1]) == 0.0
    with pytest.raises(ValueError):
        auroc([], [1.0])
    with pytest.raises(ValueError):
        auroc([np.nan], [1.0])


def test_scores_are_per_image_and_deterministic() -> None:
    torch.manual_seed(0)
    model = ConvVAE(ModelConfig(conv_channels=(4, 8, 8), hidden_dim=16)).eval()
    x = torch.rand(5, 1, 28, 28)
    scores = training.anomaly_score(model, x)
    assert scores.shape == (5,) and torch.isfinite(scores).all()
    assert torch.equal(scores, training.anomaly_score(model, x))
    # −ELBO is at least the KL, which is non-negative, plus a positive reconstruction cost
    assert (negative_elbo(model, x) > 0).all()
    reference = torch.rand(7, 1, 28, 28)
    typical = training.anomaly_score(model, x, "typicality", reference=reference)
    assert torch.allclose(typical, (scores - negative_elbo(model, reference).mean()).abs())
    # an image exactly as likely as the reference's mean is the most typical: score 0
    assert training.anomaly_score(model, x[:1], "typicality", reference=x[:1]).item() == pytest.approx(0, abs=1e-3)
    with pytest.raises(ValueError, match="reference"):
        training.anomaly_score(model, x, "typicality")
    with pytest.raises(ValueError):
        training.anomaly_score(model, x, "magic")


def test_cli_reports_auroc_against_another_data_set(tiny_mnist: Path, tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "training", "train", "--out", str(tmp_path / "run"),
                          "--data-dir", str(tiny_mnist), "--epochs", "3", "--batch-size", "32", *TINY_FLAGS],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, env=ENV)
    assert run.returncode == 0, run.stderr
    noise = tmp_path / "noise"
    noise.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, size=(28, 28), dtype=np.uint8)).save(noise / f"{i}.png")
    result = subprocess.run([sys.executable, "-m", "training", "anomaly", str(tmp_path / "run"), "--data-dir",
                             str(tiny_mnist), "--ood", "folder", "--ood-data-dir", str(noise), "--json"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, env=ENV)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["in"] == "mnist" and report["in_images"] == 64 and report["out_images"] == 2
    # white noise is nothing like the training squares: both scores find it
    assert report["methods"]["elbo"]["auroc"] == 1.0
    assert report["methods"]["typicality"]["auroc"] == 1.0
