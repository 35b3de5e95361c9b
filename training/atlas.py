"""The atlas: the test set and the training split encoded by a checkpoint's encoder and laid
out in 2-D by UMAP, saved into the checkpoint folder so that the app only loads it (no UMAP, no
data set at start-up).

    atlas.safetensors   means (N, D) float32, logvars (N, D) float32, labels (N,) int64,
                        embedding (N, 2) float32, index (N,) int64 (position in the test set),
                        neg_elbo and anomaly (N,) float32 (training.anomaly's scores),
                        thumbnails (B,) uint8: one PNG, the N test images as tiles of a
                          sheet, row by row, thumbnail_columns across (the map's hover cards),
                        train_means (M, D) float32: the encoder means of the training split, in
                          its order (the page's nearest training images)
                        train_embedding (M, 2) float32, train_labels (M,) int64: the training
                          split on the same map (one UMAP of test and training means together),
                          unless built with test_only
    metadata            dataset, count, UMAP backend and parameters, seconds taken,
                        thumbnail_columns, and for an image folder the test images' names
                        (JSON list of file stems, the map's hover labels)

UMAP runs on the GPU with RAPIDS cuML when it is installed, with umap-learn otherwise.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from training.anomaly import anomaly_scores
from training.checkpoint import atomic_save_tensors
from training.data import FOLDER, Split
from training.evaluate import checkpoint_data, encode_dataset, load_for_batches
from training.images import names_of_test_split

ATLAS = "atlas.safetensors"


UMAP_PARAMETERS = {"n_components": 2, "n_neighbors": 15, "min_dist": 0.1}


def umap_backend() -> str:
    """ "cuml" when RAPIDS cuML (GPU UMAP) can be imported and a CUDA GPU is visible, else
    "umap-learn" (cuML installed on a machine without a usable GPU cannot run)."""
    if not torch.cuda.is_available():
        return "umap-learn"
    try:
        import cuml.manifold  # noqa: F401, PLC0415 - probing for the optional GPU library
    except ImportError:
        return "umap-learn"
    return "cuml"


def umap_embedding(points: np.ndarray, seed: int = 0, backend: str | None = None) -> np.ndarray:
    """(N, D) -> (N, 2) float32 with cuML's UMAP or umap-learn's (imported here: numba compiles
    for a while, and neither belongs on the app's start-up path)."""
    backend = backend or umap_backend()
    if backend == "cuml":
        from cuml.manifold import UMAP  # noqa: PLC0415

        return np.asarray(UMAP(**UMAP_PARAMETERS, random_state=seed).fit_transform(points), np.float32)
    import umap  # noqa: PLC0415 - deliberately lazy

    return umap.UMAP(**UMAP_PARAMETERS, random_state=seed).fit_transform(points).astype(np.float32)


def thumbnail_sheet(images: torch.Tensor) -> tuple[bytes, int]:
    """(PNG bytes, columns): IMAGES (N, C, H, W) in [0, 1] as tiles of one sheet, row by row,
    ceil(√N) across; gray stays one channel (a PNG compresses it best)."""
    count, channels, height, width = images.shape
    columns = max(1, math.ceil(math.sqrt(count)))
    rows = math.ceil(count / columns)
    pixels = images.mul(255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    sheet = np.zeros((rows * columns, height, width, channels), np.uint8)
    sheet[:count] = pixels
    sheet = sheet.reshape(rows, columns, height, width, channels).transpose(0, 2, 1, 3, 4)
    sheet = sheet.reshape(rows * height, columns * width, channels)
    png = io.BytesIO()
    Image.fromarray(sheet[..., 0] if channels == 1 else sheet).save(png, format="PNG", optimize=True)
    return png.getvalue(), columns


def atlas_extras(test_images: torch.Tensor, names: list[str] | None) -> tuple[dict, dict]:
    """(tensors, metadata) the page needs beside the map: the test images' thumbnail sheet and
    their NAMES where they have them."""
    png, columns = thumbnail_sheet(test_images)
    tensors = {"thumbnails": torch.frombuffer(bytearray(png), dtype=torch.uint8)}
    metadata = {"thumbnail_columns": str(columns)}
    if names is not None:
        metadata["names"] = json.dumps(names)
    return tensors, metadata


def map_embeddings(
    test_means: torch.Tensor, train: Split, train_means: torch.Tensor, seed: int, backend: str, test_only: bool
) -> tuple[np.ndarray, dict]:
    """(the test means' map positions (N, 2), the training split's tensors for the atlas): one
    UMAP of both splits' means, so that they share a layout; of the test split's alone when
    TEST_ONLY (a training split too large to lay out)."""
    if test_only:
        return umap_embedding(test_means.numpy(), seed=seed, backend=backend), {"train_means": train_means}
    both = umap_embedding(torch.cat([test_means, train_means]).numpy(), seed=seed, backend=backend)
    n = len(test_means)
    extras = {"train_means": train_means, "train_embedding": torch.from_numpy(both[n:]), "train_labels": train.labels}
    return both[:n], extras


def build_atlas(
    checkpoint: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    limit: int = 0,
    seed: int = 0,
    test_only: bool = False,
) -> Path:
    started = time.perf_counter()
    model = load_for_batches(checkpoint, likelihood=True)  # its encoder is the model's own in any case
    dataset = model.checkpoint_config["dataset"]["name"]
    train, test = checkpoint_data(model, data_dir)
    count = min(limit, len(test)) if limit else len(test)
    mu, logvar = encode_dataset(model, test.images[:count], test.labels[:count])
    # each image's anomaly scores, so the app can rank a new image without the data; scored as
    # the page scores an upload: a conditional model without the label, by the class that
    # explains the image best (the same as with the label for an unconditional one)
    scores = anomaly_scores(model, test.images[:count])
    backend = umap_backend()
    train_means, _ = encode_dataset(model, train.images, train.labels)
    embedding, train_tensors = map_embeddings(mu, train, train_means, seed, backend, test_only)
    names = None
    if dataset == FOLDER:  # what the map calls each point: its file's name
        record = model.checkpoint_config["dataset"]
        names = names_of_test_split(data_dir or record["path"], record.get("split_seed", 0))[:count]
    extras, extra_metadata = atlas_extras(test.images[:count], names)
    path = Path(checkpoint) / ATLAS
    atomic_save_tensors(
        path,
        {
            "means": mu,
            "logvars": logvar,
            "labels": test.labels[:count],
            "embedding": torch.from_numpy(embedding),
            "neg_elbo": scores["elbo"],
            "anomaly": scores["complexity"],
            "index": torch.arange(count),
            **extras,
            **train_tensors,
        },
        metadata={
            "dataset": dataset,
            "split": "test",
            "count": str(count),
            "umap": f"{backend}: "
            + ", ".join(f"{k}={v}" for k, v in {**UMAP_PARAMETERS, "random_state": seed}.items()),
            "seconds": f"{time.perf_counter() - started:.1f}",
            **extra_metadata,
        },
    )
    return path
