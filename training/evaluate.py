"""Test-set figures of a trained VAE: ELBO (nats) with its parts, reconstruction MSE, kNN-5
accuracy of the encoder's means, and the importance-sampled negative log-likelihood."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch import Tensor

from training.checkpoint import load_likelihood_model, load_model
from training.data import FOLDER, DataError, Split, load_data
from training.images import files_fingerprint
from training.model import ConvVAE, kl_divergence, log_likelihood, reconstruction_error

# images per forward pass when evaluating: smaller batches stay in cache (docs/training-speed.md)
EVAL_BATCH = 500
# Burda, Grosse & Salakhutdinov 2016 ("Importance Weighted Autoencoders"): a latent is active
# when its encoder mean varies over the data, Var_x E[z_d|x], by more than this
ACTIVE_VARIANCE = 0.01


def checkpoint_data(model: ConvVAE, data_dir: str | os.PathLike | None = None) -> tuple[Split, Split]:
    """(train, test) of the data set a checkpoint was trained on, split as it was: an image
    folder is found at DATA_DIR, else where training read it, and must hold the same files
    (check_same_files)."""
    dataset = model.checkpoint_config["dataset"]
    folder = data_dir or dataset.get("path")
    if dataset["name"] == FOLDER and folder is not None:
        check_same_files(folder, dataset)
    train, test, _ = load_data(dataset["name"], folder, model.config.image_shape, seed=dataset.get("split_seed", 0))
    return train, test


def check_same_files(folder: str | os.PathLike, dataset: dict) -> None:
    """Raise DataError when FOLDER's images are not those a checkpoint's DATASET record says it
    was trained on: its test split, a seeded permutation of the files, would then be another,
    and the figures would mix in training images without a word. Checked by count, and by the
    files' names where the checkpoint recorded them (files_sha256; older ones did not)."""
    recorded = dataset.get("train_images", 0) + dataset.get("test_images", 0)
    if not recorded or not Path(folder).is_dir():
        return  # nothing recorded to compare; a missing folder is load_data's error
    count, fingerprint = files_fingerprint(folder)
    if count != recorded:
        changed = f"holds {count} images, but the model was trained on {recorded} from it"
    elif dataset.get("files_sha256", fingerprint) != fingerprint:
        changed = f"holds {count} images, as many as the model was trained on, but under other names"
    else:
        return
    raise DataError(
        f"{folder} {changed}: its test split cannot be found again, and the figures would mix in "
        "training images; pass the images as they were with --data-dir, or train again."
    )


def load_for_batches(
    checkpoint: str | os.PathLike, device: torch.device | str = "cpu", likelihood: bool = False
) -> ConvVAE:
    """A checkpoint's model for whole-data-set passes (evaluate, atlas, sampler, anomaly):
    channels-last, the layout oneDNN's and cuDNN's fast convolutions want. LIKELIHOOD: with the
    decoder anomaly scores use (a sharpened checkpoint's parent's; load_likelihood_model)."""
    loader = load_likelihood_model if likelihood else load_model  # anomaly scores need a calibrated decoder
    return loader(checkpoint, device=device).to(memory_format=torch.channels_last)


def _rows(labels: Tensor | None, start: int, size: int, device: torch.device) -> Tensor | None:
    return None if labels is None else labels[start : start + size].to(device)


@torch.inference_mode()
def encode_dataset(
    model: ConvVAE, images: Tensor, labels: Tensor | None = None, batch_size: int = EVAL_BATCH
) -> tuple[Tensor, Tensor]:
    """images (N, C, H, W) in [0, 1] (labels (N,): needed by a conditional model) -> (mu,
    logvar), each (N, D) float32 on the CPU."""
    device = next(model.parameters()).device
    mus, logvars = [], []
    for start in range(0, len(images), batch_size):
        mu, logvar = model.encode(
            images[start : start + batch_size].to(device, non_blocking=True), _rows(labels, start, batch_size, device)
        )
        mus.append(mu.float().cpu())
        logvars.append(logvar.float().cpu())
    return torch.cat(mus), torch.cat(logvars)


def elbo_metrics(
    model: ConvVAE, images: Tensor, loss: str, labels: Tensor | None = None, seed: int = 0, batch_size: int = EVAL_BATCH
) -> dict[str, float]:
    """Per-image means over IMAGES: the negative ELBO in nats under the model's own likelihood
    (one posterior sample per image, fixed seed), its reconstruction and KL parts, and the
    per-pixel MSE of reconstructions decoded from the means; the number of active latent units
    and the largest standard deviation of a latent's mean over the images."""
    return _elbo_pass(model, images, loss, labels, seed, batch_size)[0]


@torch.inference_mode()
def _elbo_pass(
    model: ConvVAE, images: Tensor, loss: str, labels: Tensor | None, seed: int, batch_size: int
) -> tuple[dict[str, float], Tensor]:
    """elbo_metrics, and the encoder's means (N, D) on the CPU, which kNN needs as well."""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    # summed on the device, read once: a read per batch would wait on the GPU each time (same
    # arithmetic as adding the float32 batch sums in Python floats)
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # -log p(x|z), KL, squared error
    mus = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device, non_blocking=True)
        y = _rows(labels, start, batch_size, device)
        mu, logvar = model.encode(x, y)
        z = model.reparameterize(mu, logvar, generator)
        sums += torch.stack(
            [
                -log_likelihood(model.decode_logits(z, y), x, loss).sum(),
                kl_divergence(mu, logvar).sum(),
                reconstruction_error(model.decode_logits(mu, y), x, "mse").sum(),
            ]
        ).double()
        mus.append(mu.float())
    nll_sum, kl_sum, sq_sum = sums.tolist()
    n = len(images)
    mus = torch.cat(mus).cpu()  # (N, D)
    spread = mus.std(dim=0) if n > 1 else torch.zeros(mus.shape[1])  # (D,) of each latent's mean over the images
    metrics = {
        "neg_elbo_nats": (nll_sum + kl_sum) / n,
        "reconstruction_nats": nll_sum / n,
        "kl_nats": kl_sum / n,
        "mse_per_pixel": sq_sum / (n * images[0].numel()),
        "active_units": int((spread.pow(2) > ACTIVE_VARIANCE).sum()),
        # the largest of those standard deviations: 0 when the encoder gives every image the same
        # latent (a layer's units all switched off), so the model can only draw one image
        "latent_spread": float(spread.max()),
    }
    return metrics, mus


def knn_accuracy(train_z: Tensor, train_y: Tensor, test_z: Tensor, test_y: Tensor, k: int = 5) -> float:
    """Fraction of test points whose K nearest training points (Euclidean) vote their label;
    ties go to the smallest label."""
    classes = int(max(train_y.max(), test_y.max())) + 1
    votes = torch.nn.functional.one_hot(train_y[nearest_neighbours(train_z, test_z, k)], classes).sum(dim=1)
    return int((votes.argmax(dim=1) == test_y).sum()) / len(test_z)


def nearest_neighbours(points: Tensor, queries: Tensor, k: int, chunk: int = 16, block: int = 100) -> Tensor:
    """Indices (Q, K) of the K POINTS (N, D) nearest to each of QUERIES (Q, D), exactly, and
    about twice as fast as a top-k over every distance (docs/training-speed.md).

    Distances rank as |b|² - 2a·b (|a|² is the same for every candidate b), CHUNK queries at a
    time. The points are cut into blocks; the K blocks with the smallest minima hold every one
    of the K nearest points (each block that holds one has its minimum among the K smallest
    distances, and there are at most K such blocks), so the final top-k looks at K·BLOCK
    candidates, not all N. One distance buffer serves every chunk: a fresh tensor per chunk
    fragments glibc's heap, which then grows by that much per chunk."""
    n = len(points)
    if n < k:
        raise ValueError(f"{k} nearest neighbours need at least {k} points, got {n}")
    block = max(1, min(block, n // k))
    pad = (-n) % block
    squares = points.pow(2).sum(dim=1)  # (N,)
    if pad:  # padding points at infinite distance
        points = torch.cat([points, points.new_zeros(pad, points.shape[1])])
        squares = torch.cat([squares, squares.new_full((pad,), float("inf"))])
    points_t = points.t().contiguous()  # (D, N + pad)
    buffer = torch.empty(min(chunk, len(queries)), n + pad, dtype=points.dtype)
    nearest = torch.empty(len(queries), k, dtype=torch.long)
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk]
        distances = torch.addmm(squares, q, points_t, alpha=-2, out=buffer[: len(q)])  # (c, N + pad)
        blocks = distances.view(len(q), -1, block)
        best_blocks = blocks.amin(dim=2).topk(k, largest=False).indices  # (c, K)
        candidates = blocks.gather(1, best_blocks.unsqueeze(-1).expand(-1, -1, block)).flatten(1)  # (c, K·BLOCK)
        position = candidates.topk(k, largest=False).indices  # (c, K)
        nearest[start : start + len(q)] = best_blocks.gather(1, position // block) * block + position % block
    return nearest


@torch.inference_mode()
def importance_sampled_nll(
    model: ConvVAE,
    images: Tensor,
    loss: str,
    samples: int = 100,
    labels: Tensor | None = None,
    seed: int = 0,
    batch_size: int = 100,
) -> Tensor:
    """-log p(x) per image in nats, (N,), by importance sampling with q(z|x) as proposal
    (Burda et al. 2016):

        log p(x) ≈ logsumexp_k [ log p(x|z_k) + log p(z_k) - log q(z_k|x) ] - log K,
        z_k ~ q(z|x) = N(mu, diag(sigma^2)),  k = 1..K.

    A lower bound on log p(x) that tightens as K grows; K=1 is the ELBO."""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    out = []
    log_2pi = math.log(2 * math.pi)
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        n = len(x)
        y = _rows(labels, start, batch_size, device)
        mu, logvar = model.encode(x, y)
        std = torch.exp(0.5 * logvar)
        eps = torch.randn((samples, *mu.shape), generator=generator, device=device)
        z = mu + eps * std  # (K, n, D)
        logits = model.decode_logits(z.reshape(samples * n, -1), None if y is None else y.repeat(samples))
        log_px_z = log_likelihood(logits, x.repeat(samples, 1, 1, 1), loss).reshape(samples, n)
        log_pz = -0.5 * (z.pow(2) + log_2pi).sum(-1)
        log_qz = -0.5 * (eps.pow(2) + logvar + log_2pi).sum(-1)
        log_w = log_px_z + log_pz - log_qz
        out.append(-(torch.logsumexp(log_w, dim=0) - math.log(samples)).cpu())
    return torch.cat(out)


def test_metrics(
    model: ConvVAE, train_images: Tensor, train_labels: Tensor, test_images: Tensor, test_labels: Tensor, loss: str
) -> dict[str, float]:
    """The figures written to metrics.json: ELBO parts, MSE and kNN-5 accuracy of the means."""
    metrics, test_mu = _elbo_pass(model, test_images, loss, test_labels, seed=0, batch_size=EVAL_BATCH)
    train_mu, _ = encode_dataset(model, train_images, train_labels)
    metrics["knn5_accuracy"] = knn_accuracy(train_mu, train_labels, test_mu, test_labels, k=5)
    return metrics
