import gzip
import hashlib
import re
import urllib.error
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import write_tiny_mnist
from training import data as data_module
from training.data import DataError, load_dataset, locate_files, parse_idx, read_idx, write_idx


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_idx_round_trip(tmp_path: Path, name: str) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / name, array)
    back = read_idx(tmp_path / name)
    assert back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, array)


def _header(ndim_shape: tuple[int, ...], type_code: int = 0x08) -> bytes:
    return bytes([0, 0, type_code, len(ndim_shape)]) + b"".join(n.to_bytes(4, "big") for n in ndim_shape)


def test_truncated_idx_names_file_and_sizes(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(_header((10, 28, 28)) + bytes(100))
    with pytest.raises(DataError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message and "truncated" in message and str(16 + 10 * 784) in message


def test_idx_longer_than_header_is_refused() -> None:
    with pytest.raises(DataError, match="longer than its header"):
        parse_idx(_header((2,)) + bytes(3), "x")


def test_wrong_magic_is_refused() -> None:
    with pytest.raises(DataError, match="wrong magic number 0x504b0304"):
        parse_idx(b"PK\x03\x04" + bytes(20), "archive.zip")


def test_too_short_and_header_truncated() -> None:
    with pytest.raises(DataError, match="too short"):
        parse_idx(b"\x00\x00", "x")
    with pytest.raises(DataError, match="header is truncated"):
        parse_idx(bytes([0, 0, 8, 3]) + bytes(5), "x")


def test_corrupt_gzip_names_file(tmp_path: Path) -> None:
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(_header((5,)) + bytes(5))[:-12])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: cannot be read"):
        read_idx(path)


def test_label_count_mismatch_and_wrong_dims(tiny_mnist: Path) -> None:
    write_idx(tiny_mnist / "t10k-labels-idx1-ubyte.gz", np.zeros(63, np.uint8))
    with pytest.raises(DataError, match="has 63 labels but t10k-images-idx3-ubyte has 64 images"):
        load_dataset("mnist", tiny_mnist)
    write_idx(tiny_mnist / "t10k-labels-idx1-ubyte.gz", np.zeros((64, 2), np.uint8))
    with pytest.raises(DataError, match="has 2 dimensions, label files have 1"):
        load_dataset("mnist", tiny_mnist)


def test_load_dataset_gives_whole_tensors(tiny_mnist: Path) -> None:
    train, test = load_dataset("mnist", tiny_mnist)
    assert train.images.shape == (256, 1, 28, 28) and train.images.dtype == torch.float32
    assert 0.0 <= float(train.images.min()) and float(train.images.max()) == 1.0
    assert train.labels.dtype == torch.int64 and len(test) == 64
    assert set(train.labels.tolist()) == {0, 1, 2, 3}


def test_data_dir_from_environment(tiny_mnist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LATENT_EXPLORER_DATA", str(tiny_mnist))
    paths = locate_files("mnist")
    assert paths["test-images"] == tiny_mnist / "t10k-images-idx3-ubyte"


def test_offline_download_fails_with_one_clear_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: str, timeout: float) -> None:
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(data_module.urllib.request, "urlopen", offline)
    with pytest.raises(DataError) as info:
        locate_files("mnist", tmp_path / "empty")
    message = str(info.value)
    assert "no network?" in message and "--data-dir" in message
    assert "train-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert list((tmp_path / "empty").glob("*.part")) == []  # nothing half-written left behind


def test_download_checks_md5_and_lands_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    contents = {}
    for key, file in data_module.DATASETS["mnist"].files.items():
        array = np.full((3, 28, 28) if "images" in key else (3,), 7, np.uint8)
        write_idx(mirror / f"{file.name}.gz", array)
        contents[key] = hashlib.md5(gzip.decompress((mirror / f"{file.name}.gz").read_bytes())).hexdigest()
    good = data_module.IdxDataset(
        name="mnist",
        files={k: data_module.IdxFile(f.name, contents[k]) for k, f in data_module.DATASETS["mnist"].files.items()},
        mirrors=(mirror.as_uri() + "/",),
        class_names=tuple("0123456789"),
    )
    monkeypatch.setitem(data_module.DATASETS, "mnist", good)
    paths = locate_files("mnist", tmp_path / "dl")
    assert paths["train-images"] == tmp_path / "dl" / "train-images-idx3-ubyte.gz"
    assert read_idx(paths["train-labels"]).tolist() == [7, 7, 7]

    bad = data_module.IdxDataset(
        name="mnist",
        files={k: data_module.IdxFile(f.name, "0" * 32) for k, f in good.files.items()},
        mirrors=good.mirrors,
        class_names=good.class_names,
    )
    monkeypatch.setitem(data_module.DATASETS, "mnist", bad)
    with pytest.raises(DataError, match="MD5 mismatch"):
        locate_files("mnist", tmp_path / "dl2")
    assert not (tmp_path / "dl2" / "train-images-idx3-ubyte.gz").exists()


def _link_real_mnist(mnist_dir: Path, folder: Path) -> dict[str, bytes]:
    """FOLDER holding links to the real MNIST files; returns their bytes, to check nothing changed."""
    folder.mkdir(parents=True)
    for path in mnist_dir.glob("*-ubyte.gz"):
        (folder / path.name).symlink_to(path)
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_a_folder_of_mnist_is_not_read_as_fashion_mnist(
    mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the two data sets share file names: with LATENT_EXPLORER_DATA naming an MNIST folder,
    # Fashion-MNIST must not be read from it (the Fashion model would be evaluated on digits,
    # silently)
    mnist = tmp_path / "mnist"
    before = _link_real_mnist(mnist_dir, mnist)
    fashion = tmp_path / "system-fashion"  # a stand-in for Debian's folder, tiny files
    write_tiny_mnist(fashion)
    monkeypatch.setitem(
        data_module.DATASETS,
        "fashion-mnist",
        replace(data_module.DATASETS["fashion-mnist"], system_dirs=(str(fashion),)),
    )
    monkeypatch.setenv("LATENT_EXPLORER_DATA", str(mnist))
    # passed over for the next folder that has the files
    assert locate_files("fashion-mnist")["test-labels"] == fashion / "t10k-labels-idx1-ubyte.gz"
    assert locate_files("mnist")["test-labels"] == mnist / "t10k-labels-idx1-ubyte.gz"

    # nowhere else: said in one sentence, and nothing downloaded over MNIST's files
    monkeypatch.setitem(
        data_module.DATASETS, "fashion-mnist", replace(data_module.DATASETS["fashion-mnist"], system_dirs=())
    )
    wrong = re.escape(f"{mnist} holds mnist's files, not fashion-mnist's (they share file names)")
    with pytest.raises(DataError, match=f"^{wrong}; pass the folder of fashion-mnist's files with --data-dir\\.$"):
        locate_files("fashion-mnist", mnist, download=False)

    def offline(url: str, timeout: float) -> None:
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(data_module.urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match=f"^{wrong}\\. Could not download train-images-idx3-ubyte.gz for fashion-mnist"):
        locate_files("fashion-mnist", mnist)
    assert {p.name: p.read_bytes() for p in mnist.iterdir() if p.is_file()} == before


def test_a_download_never_lands_in_a_folder_of_another_data_set(
    mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mnist = tmp_path / "mnist"
    before = _link_real_mnist(mnist_dir, mnist)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    contents = {}
    for key, file in data_module.DATASETS["fashion-mnist"].files.items():
        write_idx(mirror / f"{file.name}.gz", np.full((3, 28, 28) if "images" in key else (3,), 5, np.uint8))
        contents[key] = hashlib.md5(gzip.decompress((mirror / f"{file.name}.gz").read_bytes())).hexdigest()
    served = replace(
        data_module.DATASETS["fashion-mnist"],
        mirrors=(mirror.as_uri() + "/",),
        system_dirs=(),
        files={
            k: data_module.IdxFile(f.name, contents[k]) for k, f in data_module.DATASETS["fashion-mnist"].files.items()
        },
    )
    monkeypatch.setitem(data_module.DATASETS, "fashion-mnist", served)
    paths = locate_files("fashion-mnist", mnist)
    assert paths["train-labels"] == mnist / "fashion-mnist" / "train-labels-idx1-ubyte.gz"
    assert read_idx(paths["train-labels"]).tolist() == [5, 5, 5]
    assert {p.name: p.read_bytes() for p in mnist.iterdir() if p.is_file()} == before
    # and the next call finds the download where it put it
    assert locate_files("fashion-mnist", mnist, download=False) == paths


def test_unknown_dataset() -> None:
    with pytest.raises(DataError, match="Unknown data set 'cifar'"):
        locate_files("cifar", "/nonexistent")
