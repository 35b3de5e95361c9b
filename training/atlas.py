"""The atlas: the test set encoded by a checkpoint's encoder and laid out in 2-D by UMAP,
saved into the checkpoint folder so that the app only loads it (no UMAP, no data set at
start-up).

    atlas.safetensors   means (N, D) float32, logvars (N, D) float32, labels (N,) int64,
                        embedding (N, 2) float32, index (N,) int64 (position in the test set)
    metadata            dataset, count, UMAP parameters, seconds taken
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

from training.anomaly import complexity, negative_elbo, training_loss
from training.checkpoint import atomic_save_tensors, load_model
from training.evaluate import checkpoint_data, encode_dataset

ATLAS = "atlas.safetensors"


def umap_embedding(points: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, D) -> (N, 2) float32 with umap-learn (imported here: numba compiles for a while)."""
    import umap  # noqa: PLC0415 - deliberately lazy

    reducer = umap.UMAP(n_components=2, n_neighbors=15, min_dist=0.1, random_state=seed)
    return reducer.fit_transform(points).astype(np.float32)


def build_atlas(checkpoint: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                limit: int = 0, seed: int = 0) -> Path:
    started = time.perf_counter()
    model = load_model(checkpoint, device="cpu")
    dataset = model.checkpoint_config["dataset"]["name"]
    _, test = checkpoint_data(model, data_dir)
    count = min(limit, len(test)) if limit else len(test)
    mu, logvar = encode_dataset(model, test.images[:count])
    # each image's anomaly scores, so the app can rank a new image without the data
    neg_elbo = negative_elbo(model, test.images[:count], training_loss(model))
    anomaly = neg_elbo - complexity(test.images[:count], training_loss(model))
    embedding = umap_embedding(mu.numpy(), seed=seed)
    path = Path(checkpoint) / ATLAS
    atomic_save_tensors(path, {
        "means": mu,
        "logvars": logvar,
        "labels": test.labels[:count],
        "embedding": torch.from_numpy(embedding),
        "neg_elbo": neg_elbo,
        "anomaly": anomaly,
        "index": torch.arange(count),
    }, metadata={
        "dataset": dataset,
        "split": "test",
        "count": str(count),
        "umap": "n_neighbors=15, min_dist=0.1, random_state=%d" % seed,
        "seconds": f"{time.perf_counter() - started:.1f}",
    })
    return path
