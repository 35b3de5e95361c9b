"""Sampling where the data are: a Gaussian mixture fitted to the encoder's means of the training
set (an estimate of the aggregate posterior q(z) = E_x q(z|x)), next to the prior N(0, I).

A VAE's prior and its aggregate posterior differ: the KL term pulls them together but never
makes them equal, so some of the prior's mass falls in the gaps between the classes, where
the decoder draws blurred hybrids. Sampling the fitted mixture avoids the gaps (Ghosh et al.,
2020, "From variational to deterministic autoencoders", ex-post density estimation).

    sampler = fit_mixture(means, components=10)   # means: (N, D) encoder means
    z = sampler.sample(np.random.default_rng(0), 100)   # (100, D) float32
    save_sampler(folder, sampler); load_sampler(folder)  # sampler.safetensors in a checkpoint
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file

from training.checkpoint import CheckpointError, atomic_save_tensors

SAMPLER = "sampler.safetensors"


@dataclass(frozen=True)
class MixtureSampler:
    weights: np.ndarray  # (K,) mixture weights, sum 1
    means: np.ndarray  # (K, D)
    cholesky: np.ndarray  # (K, D, D) lower-triangular factors of the covariances

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """(n, D) float32 draws from the mixture."""
        components = rng.choice(len(self.weights), size=n, p=self.weights)
        noise = rng.standard_normal((n, self.means.shape[1]))
        z = self.means[components] + np.einsum("nij,nj->ni", self.cholesky[components], noise)
        return z.astype(np.float32)


def fit_mixture(means: np.ndarray, components: int = 10, seed: int = 0) -> MixtureSampler:
    """A full-covariance Gaussian mixture fitted by EM (scikit-learn) to encoder means (N, D)."""
    from sklearn.mixture import GaussianMixture  # noqa: PLC0415 - only fitting needs it

    if components < 1 or len(means) < components:
        raise ValueError(f"need at least {components} means for {components} components, got {len(means)}")
    mixture = GaussianMixture(components, covariance_type="full", reg_covar=1e-4, random_state=seed, max_iter=200)
    mixture.fit(np.asarray(means, np.float64))
    return MixtureSampler(
        mixture.weights_ / mixture.weights_.sum(), mixture.means_, np.linalg.cholesky(mixture.covariances_)
    )


def save_sampler(folder: str | os.PathLike, sampler: MixtureSampler) -> Path:
    path = Path(folder) / SAMPLER
    atomic_save_tensors(
        path,
        {
            name: torch.from_numpy(np.ascontiguousarray(getattr(sampler, name), np.float64))
            for name in ("weights", "means", "cholesky")
        },
        metadata={"kind": "gaussian-mixture"},
    )
    return path


def load_sampler(folder: str | os.PathLike, latent_dim: int) -> MixtureSampler | None:
    """The checkpoint's fitted sampler, None when it has none; CheckpointError when unusable."""
    path = Path(folder) / SAMPLER
    if not path.is_file():
        return None
    try:
        arrays = load_file(str(path))
        sampler = MixtureSampler(arrays["weights"], arrays["means"], arrays["cholesky"])
    except (SafetensorError, OSError, KeyError) as e:
        raise CheckpointError(
            f"{path} is not a valid sampler file ({e}); rebuild it with `python -m training sampler`."
        ) from e
    k = len(sampler.weights)
    if sampler.means.shape != (k, latent_dim) or sampler.cholesky.shape != (k, latent_dim, latent_dim):
        raise CheckpointError(f"{path} does not match the model (latent size {latent_dim}); rebuild it.")
    if (
        not all(np.isfinite(a).all() for a in (sampler.weights, sampler.means, sampler.cholesky))
        or (sampler.weights < 0).any()
        or abs(sampler.weights.sum() - 1) > 1e-6
    ):
        raise CheckpointError(f"{path} holds invalid numbers; rebuild it.")
    return sampler
