"""Image folders as data sets: every PNG or JPEG under a folder, checked, centre-cropped,
resized once and held whole in one tensor, like the IDX sets. And a user's own image made a
model's input as its data set's images were made (model_input): for MNIST models, white ink
on black, the ink scaled into a 20 × 20 box and centred by its centre of mass in 28 × 28
(LeCun et al.'s MNIST recipe); for others, the largest centred square resized.

    folder/                     one class, named after the folder
        a.jpg  b.png ...
    folder/                     or one class per subfolder (its name)
        cats/ a.jpg ...
        dogs/ b.png ...

Each file is opened by its content, not its name (only the PNG and JPEG decoders are
allowed), its size is checked from the header before any pixel is decoded (a decompression
bomb is refused, never decoded), and any file that cannot be used stops loading with one
sentence naming it: a data set with a silently skipped file is not the one you asked for.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from training.data import DataError, Split
from training.model import ConvVAE

SUFFIXES = (".png", ".jpg", ".jpeg")
FORMATS = ("PNG", "JPEG")
MAX_PIXELS = 40_000_000  # 40 megapixels: larger files are refused before decoding
TEST_FRACTION = 0.1
VARIANT_MARK = "~"  # NAME~VARIANT.png is a variant of NAME.png: the split keeps them together
INK_BOX = 20  # MNIST's digits fit a 20 × 20 box inside the 28 × 28 image
DIGIT_DATASETS = ("mnist",)  # data sets whose images were made by MNIST's recipe (mnist_like)


def image_files(folder: Path) -> list[Path]:
    """Every .png / .jpg file in FOLDER and its subfolders, sorted. Raises DataError if none."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"{folder}: holds no .png or .jpg images, in it or its subfolders.")
    return files


def files_fingerprint(folder: str | os.PathLike) -> tuple[int, str]:
    """(image count, SHA-256 of their sorted relative paths) under FOLDER: what a checkpoint
    records of the folder it was trained on. Its test split is a seeded permutation of these
    files, so another set of files (added, removed, renamed) gives another split. Names, not
    contents: the same folder regenerated elsewhere (other PNG encoders) keeps its fingerprint."""
    folder = Path(folder)
    names = [p.relative_to(folder).as_posix() for p in image_files(folder)]
    return len(names), hashlib.sha256("\n".join(names).encode()).hexdigest()


def find_images(folder: str | os.PathLike) -> tuple[list[Path], np.ndarray, tuple[str, ...]]:
    """(files, labels (N,) int64, class names) under FOLDER, sorted; a class per subfolder, or
    one class named after FOLDER for the files directly in it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: is not a folder of images (pass one with --data-dir).")
    files = image_files(folder)
    groups = [p.relative_to(folder).parts[0] if len(p.relative_to(folder).parts) > 1 else "" for p in files]
    class_names = tuple(sorted(set(groups)))
    labels = np.array([class_names.index(g) for g in groups], np.int64)
    return files, labels, tuple(name or folder.resolve().name for name in class_names)


def open_image(source: Path | BinaryIO, name: str, mode: str) -> Image.Image:
    """A PNG or JPEG from a path or a binary file, checked and decoded, converted to MODE ("L"
    gray or "RGB"). NAME says what it is in errors ("photo.jpg", "the upload"). Raises DataError."""
    if isinstance(source, Path) and source.stat().st_size == 0:
        raise DataError(f"{name}: is empty (0 bytes).")
    try:
        with Image.open(source, formats=FORMATS) as image:  # reads the header only
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise DataError(
                    f"{name}: is {width}×{height} pixels, over the {MAX_PIXELS // 1_000_000}-megapixel "
                    "limit; shrink it first."
                )
            return image.convert(mode)
    except UnidentifiedImageError:
        raise DataError(
            f"{name}: is not a readable PNG or JPEG image (checked by its content, not its name)."
        ) from None
    except Image.DecompressionBombError:
        raise DataError(
            f"{name}: has more pixels than the {MAX_PIXELS // 1_000_000}-megapixel limit; shrink it first."
        ) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{name}: cannot be decoded ({e}).") from None


def square_resize(image: Image.Image, size: int) -> Image.Image:
    """The largest centred square of IMAGE, resized to SIZE × SIZE with a Lanczos filter."""
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)


def load_image(path: Path, image_size: int, channels: int) -> np.ndarray:
    """One image file as (image_size, image_size, channels) uint8: converted to gray or RGB,
    the largest centred square cropped, resized."""
    image = open_image(path, str(path), "L" if channels == 1 else "RGB")
    return np.asarray(square_resize(image, image_size), np.uint8).reshape(image_size, image_size, channels)


# the peak while loading, per pixel value: the decoded uint8 stack, its float32 copy, and the
# float32 train and test splits cut from it
LOAD_BYTES_PER_VALUE = 1 + 4 + 4


def _bytes(count: int) -> str:
    return f"{count / 1e9:.1f} GB" if count >= 1e9 else f"{count / 1e6:.0f} MB"


def available_memory() -> int | None:
    """Bytes of memory the kernel says a new allocation can have (Linux's MemAvailable), or
    None where it does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def variant_groups(files: list[Path]) -> np.ndarray:
    """(N,) int64: the group of each file, numbered in order of first appearance; files in one
    folder whose names agree up to VARIANT_MARK ("wave~1F3FB.png" and "wave.png") are one."""
    keys = [(p.parent.as_posix(), p.stem.split(VARIANT_MARK)[0]) for p in files]
    numbers: dict[tuple[str, str], int] = {}
    return np.array([numbers.setdefault(key, len(numbers)) for key in keys], np.int64)


def split_rows(files: list[Path], seed: int, test_fraction: float = TEST_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows) of FILES: whole variant groups, in a seeded random order, go to
    the test split until it holds TEST_FRACTION of the files (at least one group). Without
    variants this is a seeded permutation of the files, its first TEST_FRACTION the test set."""
    groups = variant_groups(files)
    members: list[list[int]] = [[] for _ in range(groups.max() + 1)]
    for row, group in enumerate(groups):
        members[group].append(row)
    permuted = np.random.default_rng(seed).permutation(len(members))
    order = np.array([row for group in permuted for row in members[group]], np.int64)
    ends = np.cumsum([len(members[group]) for group in permuted])  # files in the first k groups
    wanted = max(1, round(len(files) * test_fraction))
    if len(ends) == 1:  # all the files are one image's variants: split the files themselves
        n_test = wanted
    else:  # the fewest first groups that hold WANTED files, leaving at least one for training
        n_test = min(int(ends[np.searchsorted(ends, wanted)]), int(ends[-2]))
    return order[n_test:], order[:n_test]


def names_of_test_split(folder: str | os.PathLike, seed: int = 0) -> list[str]:
    """The test split's file names (stems, in the split's order): what the map names a point by."""
    files = find_images(folder)[0]
    return [files[row].stem for row in split_rows(files, seed)[1]]


def load_image_folder(
    folder: str | os.PathLike, image_size: int, channels: int, seed: int = 0, test_fraction: float = TEST_FRACTION
) -> tuple[Split, Split, tuple[str, ...]]:
    """(train, test, class names) from a folder of images; the test split is split_rows': a
    seeded random TEST_FRACTION of the files, variants of one image on the same side."""
    files, labels, class_names = find_images(folder)
    if len(files) < 2:
        raise DataError(f"{folder}: holds only {len(files)} image; a data set needs at least 2.")
    # before decoding anything: a folder too large for memory would otherwise end in the
    # kernel's OOM kill, with no word of why
    needed = len(files) * image_size * image_size * channels * LOAD_BYTES_PER_VALUE
    available = available_memory()
    if available is not None and needed > available:
        raise DataError(
            f"{folder}: {len(files):,} images of {image_size}×{image_size}×{channels} need about "
            f"{_bytes(needed)} of memory to load, and this machine has {_bytes(available)} available; "
            "use a smaller --image-size or fewer images."
        )
    # PIL decodes without the GIL; its warning about huge images is moot: load_image refuses them.
    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        pixels = np.stack(list(pool.map(lambda p: load_image(p, image_size, channels), files)))
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255.0)  # (N, C, H, W) in [0, 1]
    train_rows, test_rows = (torch.from_numpy(rows) for rows in split_rows(files, seed, test_fraction))
    targets = torch.from_numpy(labels)
    return (
        Split(images[train_rows].contiguous(), targets[train_rows]),
        Split(images[test_rows].contiguous(), targets[test_rows]),
        class_names,
    )


def write_sample_patches(folder: str | os.PathLike, size: int = 64, stride: int = 16) -> int:
    """Cut the two photographs scikit-learn ships (china.jpg, flower.jpg) into SIZE × SIZE
    patches STRIDE pixels apart, saved as PNGs in one subfolder per photograph: an RGB data set
    every installation has, for the bundled RGB model. Returns the number of patches. FOLDER
    must be new, empty, or hold these very patches (the same call again): other files would
    become part of the data set (DataError)."""
    from sklearn.datasets import load_sample_images  # noqa: PLC0415 - only this command needs it

    folder = Path(folder)
    photos = load_sample_images()
    patches = {}  # relative path -> (photo, top, left)
    for path, photo in zip(photos.filenames, photos.images):
        height, width = photo.shape[:2]
        for top in range(0, height - size + 1, stride):
            for left in range(0, width - size + 1, stride):
                patches[f"{Path(path).stem}/{top:03d}-{left:03d}.png"] = (photo, top, left)
    if folder.exists():
        others = sorted(
            p.relative_to(folder).as_posix()
            for p in folder.rglob("*")
            if p.is_file() and p.relative_to(folder).as_posix() not in patches
        )
        if others:
            raise DataError(
                f"{folder}: already holds {len(others)} other file{'s' if len(others) > 1 else ''} "
                f"({others[0]}{', ...' if len(others) > 1 else ''}), which would join the data set; "
                "write the patches to a new folder."
            )
    for name, (photo, top, left) in patches.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo[top : top + size, left : left + size]).save(folder / name)
    return len(patches)


def mnist_like(gray: np.ndarray) -> np.ndarray | None:
    """(H, W) gray values in [0, 1], any size, light or dark ink -> (28, 28) float32 in [0, 1],
    white ink on black, scaled into 20 × 20 and centred by mass; None when there is no ink."""
    g = np.asarray(gray, np.float32)
    border = np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])
    if np.median(border) > 0.5:  # dark ink on light paper (a scan, a photo): make it MNIST's way
        g, border = 1.0 - g, 1.0 - border
    g = np.clip(g - np.median(border), 0, None)  # the paper's level is black
    if g.max() < 0.05:
        return None
    g /= g.max()
    rows, cols = np.nonzero(g > 0.1)
    g = g[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = INK_BOX / max(g.shape)
    height, width = max(1, round(g.shape[0] * scale)), max(1, round(g.shape[1] * scale))
    ink = np.asarray(Image.fromarray(g, mode="F").resize((width, height), Image.Resampling.LANCZOS), np.float32)
    ink = np.clip(ink, 0, 1)
    total = ink.sum()
    com_row = (ink.sum(axis=1) * np.arange(height)).sum() / total
    com_col = (ink.sum(axis=0) * np.arange(width)).sum() / total
    top = int(np.clip(round(14 - com_row), 0, 28 - height))
    left = int(np.clip(round(14 - com_col), 0, 28 - width))
    out = np.zeros((28, 28), np.float32)
    out[top : top + height, left : left + width] = ink
    return out


def uses_digit_recipe(model: ConvVAE) -> bool:
    """Whether a user's image should be made MODEL's input by MNIST's recipe (mnist_like): a
    gray 28 × 28 model trained on MNIST; other models take the centred square, as trained."""
    config = model.config
    dataset = getattr(model, "checkpoint_config", {}).get("dataset", {}).get("name")
    return config.channels == 1 and config.image_size == 28 and dataset in DIGIT_DATASETS


def model_input(image: Image.Image, channels: int, size: int, digits: bool) -> np.ndarray | None:
    """A decoded image -> the model's input (C, size, size) float32 in [0, 1]: for DIGITS (a gray
    28 × 28 digit model, uses_digit_recipe) MNIST's recipe, else the centred square resized.
    None: no ink found."""
    if digits and channels == 1 and size == 28:
        digit = mnist_like(np.asarray(image.convert("L"), np.float32) / 255.0)
        return None if digit is None else digit[None]
    pixels = np.asarray(square_resize(image, size), np.float32) / 255.0
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
