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


@dataclass(frozen=True)
class ScoredImage:
    score: float  # −ELBO minus complexity, nats (training.anomaly_scores, "complexity")
    neg_elbo: float  # −ELBO, nats
    mu: np.ndarray  # (D,) float32, the encoder's mean
    reconstruction: np.ndarray  # (H, W, C) uint8, decoded from the mean


def score_image(model: ConvVAE, x: np.ndarray) -> ScoredImage:
    """x: one preprocessed image (C, H, W) float32 in [0, 1]."""
    batch = torch.from_numpy(np.ascontiguousarray(x, np.float32)[None])
    scores = anomaly_scores(model, batch)
    neg_elbo, score = float(scores["elbo"][0]), float(scores["complexity"][0])
    with torch.inference_mode():
        mu, _ = model.encode(batch)
    return ScoredImage(score, neg_elbo, mu[0].numpy(), decode_latents(model, mu.numpy())[0])


def percentile_among_test_set(atlas: Atlas | None, score: float) -> float | None:
    """Percentage of the atlas's test images that score lower (are less anomalous) than SCORE;
    None when the atlas has no scores (built before they were added: rebuild it)."""
    if atlas is None or atlas.anomaly is None:
        return None
    return float((atlas.anomaly < score).mean() * 100)
