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
- "typicality": how far the negative ELBO lies from its typical value on in-distribution
  images, |−ELBO(x) − mean −ELBO(reference)| (Nalisnick et al., 2019, "Detecting
  out-of-distribution inputs to deep generative models using typicality"). In high dimensions
  the data do not lie where the density is highest but in a typical set of likelihoods; an
  image whose likelihood is too *high* is as suspect as one whose likelihood is too low. It
  needs reference images from the training distribution (the CLI takes the training split).

(The input-complexity correction of Serrà et al., 2020, subtracting a PNG code length from
−log p(x), needs a likelihood of 8-bit pixel values; a Bernoulli decoder's −log p(x|z) is on
another scale, so the difference ranks white noise as the most normal image of all.)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from training.model import ConvVAE, kl_divergence, log_likelihood

METHODS = ("elbo", "typicality")
REFERENCE_IMAGES = 10_000  # in-distribution images that set the typical −ELBO
BATCH = 1000


def training_loss(model: ConvVAE) -> str:
    """The likelihood a model was trained with: its checkpoint's loss, "bce" for a bare model."""
    return getattr(model, "checkpoint_config", {}).get("train", {}).get("loss", "bce")


@torch.inference_mode()
def negative_elbo(model: ConvVAE, x: Tensor, loss: str = "bce", samples: int = 4, seed: int = 0) -> Tensor:
    """−ELBO per image in nats, (N,), the likelihood term averaged over SAMPLES posterior
    draws (fixed seed: the same x always gets the same score)."""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    scores = []
    for start in range(0, len(x), BATCH):
        batch = x[start:start + BATCH].to(device)
        mu, logvar = model.encode(batch)
        likelihood = torch.zeros(len(batch), device=device)
        for _ in range(samples):
            z = model.reparameterize(mu, logvar, generator)
            likelihood += log_likelihood(model.decode_logits(z), batch, loss)
        scores.append((kl_divergence(mu, logvar) - likelihood / samples).float().cpu())
    return torch.cat(scores)


def anomaly_score(model: ConvVAE, x: Tensor, method: str = "elbo", reference: Tensor | None = None) -> Tensor:
    """How anomalous each image is for MODEL, (N,), higher = more anomalous; x as for encode,
    (N, C, H, W) in [0, 1]. "elbo": the negative ELBO (nats). "typicality": its distance from
    the mean negative ELBO of REFERENCE, in-distribution images such as the training set (see
    the module docstring for why)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    loss = training_loss(model)
    scores = negative_elbo(model, x, loss)
    if method == "typicality":
        if reference is None or len(reference) == 0:
            raise ValueError("the typicality score needs reference images from the training distribution")
        scores = (scores - negative_elbo(model, reference, loss).mean()).abs()
    return scores


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
    u = ranks[len(a):].sum() - len(b) * (len(b) + 1) / 2
    return float(u / (len(a) * len(b)))
