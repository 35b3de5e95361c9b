"""Anomaly scores from a trained VAE, and how well they tell two data sets apart (AUROC).

    scores = training.anomaly_score(model, x)            # (N,), higher = more anomalous
    auroc(scores_in, scores_out)                          # 0.5: chance, 1: perfect

Two scores:

- "elbo": the negative ELBO, −E_q[log p(x|z)] + KL(q(z|x) ‖ p(z)), in nats: an upper bound on
  −log p(x), the encoder's and decoder's own verdict on how unlikely x is. Cheap (one encoder
  and a few decoder passes) and, for a model trained on MNIST, it separates Fashion-MNIST
  almost perfectly. But likelihood is known to fail the other way round (Nalisnick et al.,
  2019, "Do deep generative models know what they don't know?"): a model of clothes gives
  *higher* likelihood to digits, which are simpler images, mostly black.
- "complexity": the negative ELBO minus the image's complexity (Serrà et al., 2020, "Input
  complexity and out-of-distribution detection with likelihood-based generative models").
  Likelihood mixes "how typical is this for my data" with "how simple is this image"; a
  generic lossless compressor measures the second, and subtracting it leaves the first. The
  paper's complexity is a PNG code length in bits, which suits a likelihood of 8-bit values;
  ours is a Bernoulli (or fixed-variance Gaussian) likelihood of values in [0, 1], on another
  scale. So the complexity here is the negative log-likelihood of x under that same pixel
  likelihood with the predictor of a lossless image coder, LOCO-I / JPEG-LS's median edge
  detector, which predicts each pixel from its left, upper and upper-left neighbours. No
  second model, no reference data, one pass over the pixels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from training.model import ConvVAE, kl_divergence, log_likelihood

METHODS = ("elbo", "complexity")
PREDICTOR_EPS = 1e-3  # the generic predictor never claims a pixel is exactly 0 or 1
BATCH = 1000


def training_loss(model: ConvVAE) -> str:
    """The likelihood a model was trained with: its checkpoint's loss, "bce" for a bare model."""
    return getattr(model, "checkpoint_config", {}).get("train", {}).get("loss", "bce")


@torch.inference_mode()
def negative_elbo(
    model: ConvVAE, x: Tensor, loss: str = "bce", labels: Tensor | None = None, samples: int = 4, seed: int = 0
) -> Tensor:
    """−ELBO per image in nats, (N,), the likelihood term averaged over SAMPLES posterior
    draws. Every image gets the same SAMPLES draws of the noise ε (from SEED), so a score
    belongs to the image alone: the same whatever else is in the batch, or where, and image
    pairs are compared under common random numbers. A conditional model without LABELS scores
    each image with the class that explains it best (the lowest −ELBO)."""
    if model.config.num_classes and labels is None:
        return best_classes(model, x, loss, samples, seed)[1]
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    noise = torch.randn(samples, model.config.latent_dim, generator=generator, device=device)  # (K, D)
    scores = []
    for start in range(0, len(x), BATCH):
        batch = x[start : start + BATCH].to(device)
        y = None if labels is None else labels[start : start + BATCH].to(device)
        mu, logvar = model.encode(batch, y)
        likelihood = torch.zeros(len(batch), device=device)
        for eps in noise:  # z = mu + sigma * eps, one eps (D,) for every image
            z = mu + eps.to(mu.dtype) * torch.exp(0.5 * logvar)
            likelihood += log_likelihood(model.decode_logits(z, y), batch, loss)
        scores.append((kl_divergence(mu, logvar) - likelihood / samples).float().cpu())
    return torch.cat(scores)


def best_classes(
    model: ConvVAE, x: Tensor, loss: str = "bce", samples: int = 4, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """For a conditional model: the class that explains each image best, (N,) int64, and its
    −ELBO under that class, (N,) nats: the lowest of its −ELBOs given each class in turn."""
    per_class = torch.stack(
        [
            negative_elbo(model, x, loss, torch.full((len(x),), k), samples, seed)
            for k in range(model.config.num_classes)
        ]
    )  # (classes, N)
    lowest = per_class.min(dim=0)
    return lowest.indices, lowest.values


@torch.inference_mode()
def reconstruct(model: ConvVAE, x: Tensor) -> tuple[Tensor | None, Tensor, Tensor]:
    """x (N, C, H, W) in [0, 1] encoded and decoded from the encoder's mean: (labels (N,) or
    None, mu (N, D), images (N, C, H, W) in [0, 1]), on the CPU. A conditional model uses, for
    each image, the class that explains it best (best_classes); an unconditional one, none."""
    device = next(model.parameters()).device
    x = x.to(device)
    labels = best_classes(model, x, training_loss(model))[0].to(device) if model.config.num_classes else None
    mu = model.encode(x, labels)[0]
    images = model.decode(mu, labels).float().cpu()
    return None if labels is None else labels.cpu(), mu.float().cpu(), images


def median_edge_prediction(x: Tensor) -> Tensor:
    """Each pixel predicted from its left (a), upper (b) and upper-left (c) neighbours by
    LOCO-I's median edge detector: min(a, b) if c ≥ max(a, b), max(a, b) if c ≤ min(a, b),
    else a + b − c; zero beyond the border. x, result: (N, C, H, W)."""
    padded = F.pad(x, (1, 0, 1, 0))
    a, b, c = padded[..., 1:, :-1], padded[..., :-1, 1:], padded[..., :-1, :-1]
    low, high = torch.minimum(a, b), torch.maximum(a, b)
    return torch.where(c >= high, low, torch.where(c <= low, high, a + b - c))


def complexity(x: Tensor, loss: str = "bce") -> Tensor:
    """−log p(x) in nats, (N,), under the pixel likelihood LOSS with the median edge predictor:
    a generic lossless coder's idea of how much information x holds."""
    prediction = median_edge_prediction(x.float()).clamp(PREDICTOR_EPS, 1 - PREDICTOR_EPS)
    return -log_likelihood(torch.logit(prediction), x.float(), loss)


def anomaly_scores(model: ConvVAE, x: Tensor, labels: Tensor | None = None) -> dict[str, Tensor]:
    """Every method's score for x, (N,) each, from one −ELBO pass (the costly part: an encoder
    and several decoder passes); LABELS, if known, for a conditional model."""
    loss = training_loss(model)
    neg_elbo = negative_elbo(model, x, loss, labels)
    return {"elbo": neg_elbo, "complexity": neg_elbo - complexity(x, loss)}


def anomaly_score(model: ConvVAE, x: Tensor, method: str = "elbo") -> Tensor:
    """How anomalous each image is for MODEL, (N,), higher = more anomalous; x as for encode,
    (N, C, H, W) in [0, 1]. "elbo": the negative ELBO (nats). "complexity": the negative ELBO
    minus the image's complexity (nats), which stops simple images from passing as normal
    (see the module docstring)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return anomaly_scores(model, x)[method]


def auroc(in_scores: Tensor | np.ndarray, out_scores: Tensor | np.ndarray) -> float:
    """Area under the ROC curve for telling OUT (positives, should score higher) from IN: the
    probability that a random out-image outscores a random in-image, ties counting half
    (the Mann–Whitney U statistic over both sizes)."""
    a, b = np.asarray(in_scores, np.float64), np.asarray(out_scores, np.float64)
    if not (len(a) and len(b)) or not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("auroc needs two non-empty sets of finite scores")
    values = np.concatenate([a, b])
    order = values.argsort(kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]  # tied values share their mean rank
    u = ranks[len(a) :].sum() - len(b) * (len(b) + 1) / 2
    return float(u / (len(a) * len(b)))
