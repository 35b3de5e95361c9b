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
from tests.conftest import ENV, ROOT, TINY_FLAGS
from training.anomaly import auroc, complexity, median_edge_prediction, negative_elbo
from training.model import ConvVAE, ModelConfig


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
    with_complexity = training.anomaly_score(model, x, "complexity")
    assert torch.allclose(with_complexity, scores - complexity(x))
    with pytest.raises(ValueError):
        training.anomaly_score(model, x, "magic")


def test_an_images_score_does_not_depend_on_its_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    # A folder scored by `python -m training score` must rank each file by its own score: the
    # same alone, in a batch, at any position, and across the chunks negative_elbo works in.
    torch.manual_seed(0)
    model = ConvVAE(ModelConfig(conv_channels=(4, 8, 8), hidden_dim=16)).eval()
    x = torch.rand(7, 1, 28, 28)
    together = negative_elbo(model, x)
    alone = torch.cat([negative_elbo(model, x[i : i + 1]) for i in range(7)])
    reversed_order = negative_elbo(model, x.flip(0)).flip(0)
    monkeypatch.setattr("training.anomaly.BATCH", 3)  # chunks of 3, 3 and 1
    chunked = negative_elbo(model, x)
    for other in (alone, reversed_order, chunked):
        assert torch.allclose(together, other, rtol=1e-5, atol=1e-4), (together, other)
    # and the draws are random: another seed gives other scores
    assert not torch.allclose(together, negative_elbo(model, x, seed=1))


def test_the_median_edge_predictor_and_complexity() -> None:
    x = torch.tensor([[[[0.0, 1.0], [1.0, 0.5]]]])
    # first row and column: neighbours beyond the border are 0, x[0, 0] is 0; bottom-right:
    # a = left = 1, b = up = 1, c = upper-left = 0 <= min(a, b), so max(a, b) = 1
    prediction = median_edge_prediction(x)
    assert prediction.tolist() == [[[[0.0, 0.0], [0.0, 1.0]]]]
    blank, noise = torch.zeros(1, 1, 28, 28), torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    stripes = torch.zeros(1, 1, 28, 28)
    stripes[..., ::2] = 1.0  # a predictable pattern: each row repeats the one above
    assert complexity(blank) < complexity(stripes) < complexity(noise)
    assert complexity(torch.rand(2, 3, 8, 8), "mse").shape == (2,)


def test_cli_reports_auroc_against_another_data_set(tiny_mnist: Path, tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            "train",
            "--out",
            str(tmp_path / "run"),
            "--data-dir",
            str(tiny_mnist),
            "--epochs",
            "3",
            "--batch-size",
            "32",
            *TINY_FLAGS,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    assert run.returncode == 0, run.stderr
    noise = tmp_path / "noise"
    noise.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, size=(28, 28), dtype=np.uint8)).save(noise / f"{i}.png")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            "anomaly",
            str(tmp_path / "run"),
            "--data-dir",
            str(tiny_mnist),
            "--ood",
            "folder",
            "--ood-data-dir",
            str(noise),
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["in"] == "mnist" and report["in_images"] == 64 and report["out_images"] == 2
    # white noise is nothing like the training squares: both scores find it
    assert report["methods"]["elbo"]["auroc"] == 1.0
    assert set(report["methods"]) == {"elbo", "complexity"}
