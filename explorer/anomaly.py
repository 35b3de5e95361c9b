"""One user image through the model: its anomaly score, its place in latent space, its
reconstruction, and how it ranks among the encoded test set."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from explorer.atlas import Atlas
from explorer.render import decode_latents
from training.anomaly import anomaly_scores
from training.model import ConvVAE

MAX_UPLOADS = 100  # images the page ranks at once; a folder goes to `python -m training score`


@dataclass(frozen=True)
class ScoredImage:
    score: float  # −ELBO minus complexity, nats (training.anomaly_scores, "complexity")
    neg_elbo: float  # −ELBO, nats
    mu: np.ndarray  # (D,) float32, the encoder's mean
    reconstruction: np.ndarray  # (H, W, C) uint8, decoded from the mean


def score_images(model: ConvVAE, x: np.ndarray) -> list[ScoredImage]:
    """x: preprocessed images (N, C, H, W) float32 in [0, 1], scored in one batch (a score does
    not depend on the rest of the batch: training.anomaly.negative_elbo)."""
    batch = torch.from_numpy(np.array(x, np.float32))  # a writable copy: torch refuses read-only buffers
    scores = anomaly_scores(model, batch)
    with torch.inference_mode():
        mu = model.encode(batch)[0].numpy()
    return [ScoredImage(float(score), float(neg_elbo), m, reconstruction) for score, neg_elbo, m, reconstruction
            in zip(scores["complexity"], scores["elbo"], mu, decode_latents(model, mu))]


def score_image(model: ConvVAE, x: np.ndarray) -> ScoredImage:
    """x: one preprocessed image (C, H, W) float32 in [0, 1]."""
    return score_images(model, x[None])[0]


def ranking(names: list[str], scored: list[ScoredImage], atlas: Atlas | None) -> list[dict]:
    """One row per image, most anomalous first: rank, file name, score (nats), the share of the
    test set it outscores (None without the atlas's scores) and its position in NAMES."""
    order = sorted(range(len(scored)), key=lambda i: -scored[i].score)
    return [{"rank": rank, "file": names[i], "score": round(scored[i].score, 1),
             "above": percentile_among_test_set(atlas, scored[i].score), "position": i}
            for rank, i in enumerate(order, 1)]


def percentile_among_test_set(atlas: Atlas | None, score: float) -> float | None:
    """Percentage of the atlas's test images that score lower (are less anomalous) than SCORE;
    None when the atlas has no scores (built before they were added: rebuild it)."""
    if atlas is None or atlas.anomaly is None:
        return None
    return float((atlas.anomaly < score).mean() * 100)
