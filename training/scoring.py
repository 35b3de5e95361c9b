"""Screen your own images for anomalies: every PNG or JPEG under the paths given is made the
model's input as the page makes an upload (training.images.model_input: MNIST's recipe for a
digit model, the centred square otherwise), scored by training.anomaly (by default −ELBO
minus the image's complexity, the page's score; or the plain −ELBO; nats, higher = more
anomalous), ranked, and placed among the checkpoint's test set: the percentage of its test
images that score lower, from the scores its atlas holds.

    python -m training score checkpoints/mnist-z8 scans/ --csv scores.csv --sheet worst.png

The page's anomaly view scores one image the same way, so a file scores the same in both.
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from safetensors import SafetensorError, safe_open
from tqdm import tqdm

from training.anomaly import METHODS, anomaly_scores, reconstruct
from training.atlas import ATLAS
from training.checkpoint import CheckpointError
from training.data import DataError
from training.images import image_files, model_input, open_image, uses_digit_recipe
from training.model import ConvVAE

CHUNK = 500  # files decoded and scored at a time: memory stays flat however many there are
TILE = 96  # about the side, in pixels, of an image on the contact sheet (a whole multiple, nearest-neighbour)
MAX_SHEET = 200  # images on one contact sheet (4 across: 50 rows)
ATLAS_KEYS = {"complexity": "anomaly", "elbo": "neg_elbo"}  # where the atlas keeps each method's test scores


@dataclass(frozen=True)
class FileScore:
    path: Path
    score: float  # the ranking method's score, nats: one of the two below
    neg_elbo: float  # −ELBO, nats (training.anomaly_scores' "elbo")
    complexity_corrected: float  # −ELBO − complexity, nats ("complexity"): the page's score
    percentile: float | None  # % of the test set scoring lower; None: the atlas has no scores
    blank: bool  # no ink found by MNIST's recipe: scored as the all-black image it becomes


def collect_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The files named and every .png / .jpg under the folders named (sorted within each
    folder), each once, in the order given. Raises DataError for a path that is neither, or a
    folder without images."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += image_files(path)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"{path}: no such file or folder.")
    unique: dict[Path, Path] = {}
    for file in files:
        unique.setdefault(file.resolve(), file)
    return list(unique.values())


def prepare(model: ConvVAE, path: Path) -> tuple[np.ndarray, bool]:
    """PATH as MODEL's input, ((C, H, W) float32 in [0, 1], blank). Raises DataError for a file
    that is not a usable PNG or JPEG (training.images.open_image's checks)."""
    channels, size, _ = model.config.image_shape
    image = open_image(path, str(path), "L" if channels == 1 else "RGB")
    x = model_input(image, channels, size, uses_digit_recipe(model))
    if x is None:  # no ink on the page: MNIST's recipe would give an all-black image
        return np.zeros((channels, size, size), np.float32), True
    return x, False


def prepare_many(model: ConvVAE, paths: Sequence[Path]) -> tuple[torch.Tensor, list[bool], list[int], list[str]]:
    """The usable files among PATHS as a batch (N, C, H, W), their blank flags, their positions
    in PATHS, and one DataError sentence per file that is not usable (each names its file).
    Decoded in threads (PIL releases the GIL); its warning about large images is moot:
    open_image refuses them before decoding."""

    def attempt(path: Path) -> tuple[np.ndarray, bool] | str:
        try:
            return prepare(model, path)
        except DataError as e:
            return str(e)

    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        prepared = list(pool.map(attempt, paths))
    usable = [i for i, p in enumerate(prepared) if not isinstance(p, str)]
    errors = [p for p in prepared if isinstance(p, str)]
    channels, size, _ = model.config.image_shape
    x = np.stack([prepared[i][0] for i in usable]) if usable else np.zeros((0, channels, size, size), np.float32)
    return torch.from_numpy(x), [prepared[i][1] for i in usable], usable, errors


def atlas_scores(checkpoint: str | os.PathLike, method: str = "complexity") -> np.ndarray | None:
    """METHOD's anomaly scores of the checkpoint's test images, (N,) float32, as its atlas holds
    them; None when it has no atlas or one built before scores were added."""
    key = ATLAS_KEYS[method]
    path = Path(checkpoint) / ATLAS
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="np") as atlas:
            if key not in atlas.keys():
                return None
            scores = atlas.get_tensor(key)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(
            f"{path}: cannot be read ({e}); rebuild it with `python -m training atlas {checkpoint}`."
        ) from None
    if scores.ndim != 1 or not len(scores) or not np.isfinite(scores).all():
        raise CheckpointError(
            f"{path}: its anomaly scores are not a list of finite numbers; rebuild it "
            f"with `python -m training atlas {checkpoint}`."
        )
    return scores.astype(np.float32)


@dataclass(frozen=True)
class ScoredFiles:
    ranked: list[FileScore]  # most anomalous first
    unreadable: list[tuple[Path, str]]  # files that could not be scored, each with its one-sentence reason


def score_files(
    model: ConvVAE,
    paths: Sequence[Path],
    method: str = "complexity",
    test_scores: np.ndarray | None = None,
    progress: bool = False,
) -> ScoredFiles:
    """Every usable file in PATHS scored, most anomalous by METHOD first (ties in the order
    given); TEST_SCORES: METHOD's scores of the test set, for each file's percentile among them.
    A file that cannot be read (not a PNG or JPEG, truncated, too large) does not stop the
    others: it is listed in .unreadable with its reason."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    results: list[FileScore] = []
    unreadable: list[tuple[Path, str]] = []
    sorted_test = None if test_scores is None else np.sort(test_scores)
    with tqdm(total=len(paths), unit="img", desc="scoring", disable=not progress, leave=False) as bar:
        for start in range(0, len(paths), CHUNK):
            chunk = paths[start : start + CHUNK]
            x, blanks, usable, errors = prepare_many(model, chunk)
            usable_set = set(usable)
            unreadable += list(zip((p for i, p in enumerate(chunk) if i not in usable_set), errors))
            bar.update(len(chunk))
            if not usable:
                continue
            scores = anomaly_scores(model, x)
            for i, score, neg_elbo, corrected, blank in zip(
                usable, scores[method].tolist(), scores["elbo"].tolist(), scores["complexity"].tolist(), blanks
            ):
                # the share of test images scoring strictly lower, as the page shows it
                below = (
                    None
                    if sorted_test is None
                    else float(np.searchsorted(sorted_test, score, side="left") / len(sorted_test) * 100)
                )
                results.append(FileScore(chunk[i], score, neg_elbo, corrected, below, blank))
    return ScoredFiles(sorted(results, key=lambda r: -r.score), unreadable)


def write_csv(path: str | os.PathLike, ranked: Sequence[FileScore]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "rank",
                "file",
                "score_nats",
                "neg_elbo_nats",
                "neg_elbo_minus_complexity_nats",
                "test_set_below_percent",
                "blank",
            ]
        )
        for rank, r in enumerate(ranked, 1):
            writer.writerow(
                [
                    rank,
                    str(r.path),
                    f"{r.score:.3f}",
                    f"{r.neg_elbo:.3f}",
                    f"{r.complexity_corrected:.3f}",
                    "" if r.percentile is None else f"{r.percentile:.2f}",
                    int(r.blank),
                ]
            )


def contact_sheet(model: ConvVAE, ranked: Sequence[FileScore], columns: int = 4) -> Image.Image:
    """RANKED's images, each beside its reconstruction, captioned with its rank, score,
    percentile and file name: what the model finds strange, and what it expected instead."""
    x, _, _, errors = prepare_many(model, [r.path for r in ranked])
    if errors:  # a file changed since it was scored
        raise DataError(errors[0])
    pairs = torch.cat([x, reconstruct(model, x)[2]], dim=3)  # (N, C, H, 2W)
    pixels = (pairs.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    size = model.config.image_size
    side = size * max(1, round(TILE / size))
    caption, gap = 34, 8
    cell_w, cell_h = 2 * side + gap, side + caption + gap
    columns = max(1, min(columns, len(ranked)))
    rows = -(-len(ranked) // columns)
    sheet = Image.new("RGB", (columns * cell_w + gap, rows * cell_h + gap), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for i, (r, pair) in enumerate(zip(ranked, pixels)):
        left, top = gap + (i % columns) * cell_w, gap + (i // columns) * cell_h
        tile = Image.fromarray(pair.squeeze(-1) if pair.shape[-1] == 1 else pair).convert("RGB")
        sheet.paste(tile.resize((2 * side, side), Image.Resampling.NEAREST), (left, top))
        where = "" if r.percentile is None else f", above {r.percentile:.1f}%"
        draw.text((left, top + side + 3), f"#{i + 1}  {r.score:.1f} nats{where}", fill=(235, 235, 235))
        name = r.path.name if len(r.path.name) <= 2 * side // 6 else r.path.name[: 2 * side // 6 - 3] + "..."
        draw.text((left, top + side + 18), name, fill=(160, 160, 160))
    return sheet
