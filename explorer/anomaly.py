"""A user's images through the model: their anomaly scores, their places in latent space,
their reconstructions, and how they rank among the encoded test set."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np
import torch

from explorer.atlas import Atlas
from explorer.render import png_data_url, to_uint8, upscale
from training.anomaly import anomaly_scores, reconstruct
from training.model import ConvVAE

MAX_UPLOADS = 100  # images the page ranks at once; a folder goes to `python -m training score`


@dataclass(frozen=True)
class ScoredImage:
    score: float  # −ELBO minus complexity, nats (training.anomaly_scores, "complexity")
    neg_elbo: float  # −ELBO, nats
    mu: np.ndarray  # (D,) float32, the encoder's mean
    reconstruction: np.ndarray  # (H, W, C) uint8, decoded from the mean
    label: int | None = None  # a conditional model's class that explains the image best


def score_images(model: ConvVAE, x: np.ndarray) -> list[ScoredImage]:
    """x: preprocessed images (N, C, H, W) float32 in [0, 1], scored in one batch (a score does
    not depend on the rest of the batch: training.anomaly.negative_elbo). A conditional model
    reads each image as the class that explains it best, and encodes and decodes it so."""
    batch = torch.from_numpy(np.array(x, np.float32))  # a writable copy: torch refuses read-only buffers
    labels, mu, images = reconstruct(model, batch)
    scores = anomaly_scores(model, batch, labels)
    classes = [None] * len(batch) if labels is None else labels.tolist()
    return [
        ScoredImage(float(score), float(neg_elbo), m, reconstruction, label)
        for score, neg_elbo, m, reconstruction, label in zip(
            scores["complexity"], scores["elbo"], mu.numpy(), to_uint8(images.numpy()), classes
        )
    ]


def score_image(model: ConvVAE, x: np.ndarray) -> ScoredImage:
    """x: one preprocessed image (C, H, W) float32 in [0, 1]."""
    return score_images(model, x[None])[0]


def ranking_order(scored: list[ScoredImage]) -> list[int]:
    """Positions in SCORED, most anomalous first (the first is the one the page inspects first)."""
    return sorted(range(len(scored)), key=lambda i: -scored[i].score)


def ranking(
    names: list[str],
    inputs: list[np.ndarray],
    scored: list[ScoredImage],
    atlas: Atlas | None,
    class_names: list[str] | None = None,
) -> list[dict]:
    """One row per image, most anomalous first: rank, a thumbnail ("image": a PNG data URL of
    the input beside its reconstruction), file name, score (nats), the share of the test set
    it outscores (None without the atlas's scores), the class a conditional model reads it as
    (its name from CLASS_NAMES; None otherwise) and its position in NAMES. INPUTS: the
    preprocessed images (C, H, W) float32 that SCORED scored."""
    rows = []
    for rank, i in enumerate(ranking_order(scored), 1):
        label = scored[i].label
        pair = np.concatenate([to_uint8(inputs[i][None])[0], scored[i].reconstruction], axis=1)
        rows.append(
            {
                "rank": rank,
                "image": png_data_url(upscale(pair, 2)),
                "file": names[i],
                "score": round(scored[i].score, 1),
                "above": percentile_among_test_set(atlas, scored[i].score),
                "label": None if label is None else (class_names[label] if class_names else str(label)),
                "position": i,
            }
        )
    return rows


def percentile_among_test_set(atlas: Atlas | None, score: float) -> float | None:
    """Percentage of the atlas's test images that score lower (are less anomalous) than SCORE;
    None when the atlas has no scores (built before they were added: rebuild it)."""
    if atlas is None or atlas.anomaly is None:
        return None
    return float((atlas.anomaly < score).mean() * 100)


def ranking_csv(rows: list[dict]) -> str:
    """RANKING's rows as CSV text, with the score command's column names where they share one;
    "read_as" (a conditional model's class) only when the rows have one."""
    conditional = any(row["label"] is not None for row in rows)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["rank", "file", "score_nats", "test_set_below_percent"] + (["read_as"] if conditional else []))
    for row in rows:
        above = "" if row["above"] is None else f"{row['above']:.2f}"
        writer.writerow(
            [row["rank"], row["file"], f"{row['score']:.1f}", above] + ([row["label"]] if conditional else [])
        )
    return out.getvalue()
