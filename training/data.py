"""Data: IDX files (MNIST, Fashion-MNIST), found on disk or downloaded and checked by MD5.

A data set is loaded once, whole, into one float32 tensor (N, 1, 28, 28) in [0, 1] and one
int64 label tensor (N,): the training loop then only slices, with no per-sample Python.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

ENV_DATA_DIR = "LATENT_EXPLORER_DATA"

# IDX type codes (third byte of the magic number) -> numpy dtype, big-endian as the format says.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class DataError(Exception):
    """A data file is missing, malformed or cannot be fetched. The message is one sentence
    naming the file and what is wrong."""


@dataclass(frozen=True)
class IdxFile:
    name: str  # file name without .gz, e.g. "train-images-idx3-ubyte"
    md5: str  # MD5 of the uncompressed content


@dataclass(frozen=True)
class IdxDataset:
    name: str
    files: dict[str, IdxFile]  # keys: train-images, train-labels, test-images, test-labels
    mirrors: tuple[str, ...]
    class_names: tuple[str, ...]
    system_dirs: tuple[str, ...] = ()  # places a system package may have put the files


DATASETS: dict[str, IdxDataset] = {
    "mnist": IdxDataset(
        name="mnist",
        files={
            "train-images": IdxFile("train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb"),
            "train-labels": IdxFile("train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624"),
            "test-images": IdxFile("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea"),
            "test-labels": IdxFile("t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637"),
        },
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        class_names=tuple(str(d) for d in range(10)),
    ),
    "fashion-mnist": IdxDataset(
        name="fashion-mnist",
        files={
            "train-images": IdxFile("train-images-idx3-ubyte", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
            "train-labels": IdxFile("train-labels-idx1-ubyte", "9018921c3c673c538a1fc5bad174d6f9"),
            "test-images": IdxFile("t10k-images-idx3-ubyte", "8181f5470baa50b63fa0f6fddb340f0a"),
            "test-labels": IdxFile("t10k-labels-idx1-ubyte", "15d484375f8d13e6eb1aabb0c3f46965"),
        },
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
    ),
}


# --------------------------------------------------------------------------- IDX reader


def _read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when it starts with gzip's magic bytes (whatever its name)."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            return gzip.decompress(raw)
        return raw
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot be read ({e}); delete it and download it again.") from e


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse the IDX format: magic 0x0000TTDD (type, dims), DD big-endian uint32 sizes, data."""
    if len(data) < 4:
        raise DataError(f"{source}: is {len(data)} bytes, too short to be an IDX file.")
    if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DataError(f"{source}: wrong magic number 0x{data[:4].hex()}, not an IDX file.")
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    if not 1 <= ndim <= 4:
        raise DataError(f"{source}: has {ndim} dimensions; IDX data sets here have 1 to 4.")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{source}: header is truncated ({len(data)} bytes, needs {header}).")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(f"{source}: {what}: {len(data)} bytes, but shape {shape} needs exactly {expected}.")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read a raw or gzip'ed IDX file into a numpy array, checking magic, dims and length."""
    path = Path(path)
    return parse_idx(_read_bytes(path), str(path))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzip'ed when the name ends in .gz). Used by tests
    and by anyone who wants to feed their own 28x28 images to the IDX path."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    payload = (
        bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape) + array.tobytes()
    )
    path = Path(path)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


# --------------------------------------------------------------------------- locating files


def default_data_root() -> Path:
    """The per-user cache folder, $XDG_CACHE_HOME/latent-explorer (default ~/.cache/...)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "latent-explorer"


def resolve_data_dir(data_dir: str | os.PathLike | None) -> tuple[Path, bool]:
    """The folder to read from: --data-dir, else $LATENT_EXPLORER_DATA, else the user cache.
    Returns (folder, given) where given says whether the user named it."""
    if data_dir:
        return Path(data_dir).expanduser(), True
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser(), True
    return default_data_root(), False


def _find(folder: Path, file: IdxFile) -> Path | None:
    for candidate in (folder / f"{file.name}.gz", folder / file.name):
        if candidate.is_file():
            return candidate
    return None


def _md5_of_content(path: Path) -> str:
    return hashlib.md5(_read_bytes(path)).hexdigest()


def _download(dataset: IdxDataset, file: IdxFile, folder: Path) -> Path:
    """Fetch FILE.gz from the first mirror that answers, check the MD5 of its content, and
    move it into place atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    network_failed = False
    for mirror in dataset.mirrors:
        url = f"{mirror}{file.name}.gz"
        fd, tmp_name = tempfile.mkstemp(dir=folder, suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=30) as response:
                shutil.copyfileobj(response, out)
            if _md5_of_content(tmp) != file.md5:
                errors.append(f"{url}: MD5 mismatch")
                continue
            target = folder / f"{file.name}.gz"
            os.replace(tmp, target)
            return target
        except (urllib.error.URLError, OSError, DataError) as e:
            network_failed = network_failed or isinstance(e, (urllib.error.URLError, OSError))
            errors.append(f"{url}: {getattr(e, 'reason', e)}")
        finally:
            tmp.unlink(missing_ok=True)
    why = "no network?" if network_failed else "every mirror served a file with the wrong MD5"
    raise DataError(
        f"Could not download {file.name}.gz for {dataset.name} ({why}): put "
        + ", ".join(f"{f.name}.gz" for f in dataset.files.values())
        + f" in a folder and pass it with --data-dir (or set {ENV_DATA_DIR}). Tried: "
        + "; ".join(errors)
    )


def _other_dataset_in(folder: Path, dataset: IdxDataset) -> str | None:
    """The name of another known data set whose label files FOLDER holds, else None. MNIST
    and Fashion-MNIST use the same file names, so a folder of one must not be read as the
    other (a user whose LATENT_EXPLORER_DATA names an MNIST folder, training Fashion-MNIST).
    The label files are small, so checking them costs next to nothing."""
    for key in ("train-labels", "test-labels"):
        path = _find(folder, dataset.files[key])
        if path is None:
            continue
        try:
            md5 = _md5_of_content(path)
        except DataError:
            return None  # unreadable: reading it reports that, naming the file
        for other in DATASETS.values():
            if other.name != dataset.name and other.files[key].md5 == md5:
                return other.name
    return None


def locate_files(
    dataset_name: str, data_dir: str | os.PathLike | None = None, download: bool = True
) -> dict[str, Path]:
    """Paths of the four IDX files of a data set, downloading what is missing.

    Looked for in DIR and DIR/<dataset>, DIR being --data-dir, $LATENT_EXPLORER_DATA or the
    user cache, then in system folders (Debian's dataset-fashion-mnist), passing over a folder
    that holds another known data set's files. Downloads go to DIR/<dataset> for the cache and
    to DIR itself for a folder the user named, unless DIR holds another data set's files."""
    if dataset_name not in DATASETS:
        raise DataError(f"Unknown data set {dataset_name!r}; choose one of {sorted(DATASETS)}.")
    dataset = DATASETS[dataset_name]
    root, given = resolve_data_dir(data_dir)
    candidates = [root, root / dataset.name] + [Path(p) for p in dataset.system_dirs]
    others = {folder: other for folder in candidates if (other := _other_dataset_in(folder, dataset))}
    folders = [folder for folder in candidates if folder not in others]
    # said when the files are not found: the folder the user named holds the wrong data set
    wrong = ""
    if root in others:
        wrong = f"{root} holds {others[root]}'s files, not {dataset.name}'s (they share file names)"
    found: dict[str, Path] = {}
    for key, file in dataset.files.items():
        path = next((p for p in (_find(f, file) for f in folders) if p is not None), None)
        if path is None:
            if wrong and not download:
                raise DataError(f"{wrong}; pass the folder of {dataset.name}'s files with --data-dir.")
            if not download:
                raise DataError(
                    f"{file.name}(.gz) for {dataset.name} is not in {root}; pass the folder "
                    "that holds it with --data-dir."
                )
            try:  # never into a folder of another data set's files, which have the same names
                path = _download(dataset, file, root if given and root not in others else root / dataset.name)
            except DataError as e:
                if not wrong:
                    raise
                raise DataError(f"{wrong}. {e}") from e
        found[key] = path
    return found


# --------------------------------------------------------------------------- tensors


@dataclass(frozen=True)
class Split:
    images: Tensor  # (N, 1, H, W) float32 in [0, 1]
    labels: Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)


def load_split(images_path: Path, labels_path: Path) -> Split:
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3:
        raise DataError(f"{images_path}: has {images.ndim} dimensions, image files have 3 (N, H, W).")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: has {labels.ndim} dimensions, label files have 1 (N,).")
    if images.dtype != np.uint8:
        raise DataError(f"{images_path}: holds {images.dtype}, expected unsigned bytes.")
    if len(images) != len(labels):
        raise DataError(f"{labels_path}: has {len(labels)} labels but {images_path.name} has {len(images)} images.")
    x = torch.from_numpy(images.copy()).unsqueeze(1).float().div_(255.0)
    y = torch.from_numpy(labels.astype(np.int64))
    return Split(images=x, labels=y)


FOLDER = "folder"  # --dataset folder: any folder of PNG / JPEG images (training/images.py)
DATASET_NAMES = (*sorted(DATASETS), FOLDER)


def _image_folder(data_dir: str | os.PathLike | None) -> str | os.PathLike:
    """--data-dir, which --dataset folder cannot do without."""
    if data_dir is None:
        raise DataError("--dataset folder needs --data-dir, the folder that holds the images.")
    return data_dir


def class_count(name: str, data_dir: str | os.PathLike | None) -> int:
    """How many classes a data set has (a conditional VAE needs it before loading the data)."""
    if name == FOLDER:
        from training.images import find_images  # noqa: PLC0415 - images.py imports this module

        return len(find_images(_image_folder(data_dir))[2])
    return len(DATASETS[name].class_names)


def load_data(
    name: str,
    data_dir: str | os.PathLike | None,
    image_shape: tuple[int, int, int],
    seed: int = 0,
    download: bool = True,
) -> tuple[Split, Split, tuple[str, ...]]:
    """(train, test, class names) of any data set, images shaped IMAGE_SHAPE (C, H, W): an
    IDX set by name (its images must already have that shape) or a folder of images (resized
    to it; SEED picks the test split)."""
    if name == FOLDER:
        from training.images import load_image_folder  # noqa: PLC0415 - images.py imports this module

        channels, size, _ = image_shape
        return load_image_folder(_image_folder(data_dir), size, channels, seed=seed)
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(DATASET_NAMES)}.")
    train, test = load_dataset(name, data_dir, download=download)
    if tuple(train.images.shape[1:]) != tuple(image_shape):
        raise DataError(
            f"{name} images are {'×'.join(map(str, train.images.shape[1:]))} but the model "
            f"expects {'×'.join(map(str, image_shape))}; drop --image-size / --channels."
        )
    return train, test, DATASETS[name].class_names


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, download: bool = True) -> tuple[Split, Split]:
    """(train, test) of an IDX data set, each whole in memory."""
    paths = locate_files(name, data_dir, download=download)
    train = load_split(paths["train-images"], paths["train-labels"])
    test = load_split(paths["test-images"], paths["test-labels"])
    return train, test
