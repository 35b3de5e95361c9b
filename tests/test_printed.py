"""Printed digits for training (training/printed.py): the training families and the benchmark's
are apart, the digits arrive prepared as MNIST's are, and a run trained with them records them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import TINY_MODEL
from training.checkpoint import load_model
from training.data import DataError, load_dataset
from training.evaluate import encode_dataset, knn_accuracy
from training.printed import (
    SHEET_FOLDER,
    SHEET_NAME,
    font_design,
    printed_training_digits,
    read_sheet,
    write_sheet,
)
from training.train import TrainConfig, device_data, train

BENCHMARK_FONTS = Path(__file__).parent / "data" / "handwriting" / "fonts.json"


def sheet_sources(path: Path) -> list[str]:
    return json.loads(path.read_text())["sources"]


def test_a_face_belongs_to_its_design() -> None:
    assert font_design("DejaVuSerif-BoldItalic") == font_design("DejaVuSerif") == "DejaVuSerif"
    assert font_design("DejaVuSerifCondensed-Bold") == "DejaVuSerif"
    assert font_design("LinLibertine_RBI") == "LinLibertine"
    assert font_design("dkgBI") == font_design("dkgIt") == "dkg"
    # metric clones of one typeface are one design
    assert font_design("FreeSansBoldOblique") == font_design("LiberationSansNarrow-Bold") == "Helvetica"
    assert font_design("NimbusRoman-Italic") == font_design("LiberationSerif-Regular") == "Times"


def test_no_font_design_is_both_trained_on_and_measured() -> None:
    training = {font_design(s) for s in sheet_sources(SHEET_FOLDER / f"{SHEET_NAME}.json")}
    measured = {font_design(s) for s in sheet_sources(BENCHMARK_FONTS)}
    assert len(training) >= 5 and len(measured) >= 5
    assert not training & measured


def test_the_printed_digits_arrive_prepared_as_mnist_digits_and_repeated() -> None:
    labels = json.loads((SHEET_FOLDER / f"{SHEET_NAME}.json").read_text())["labels"]
    split = printed_training_digits(copies=3, image_shape=(1, 28, 28))
    n = len(labels)
    assert split.images.shape == (3 * n, 1, 28, 28) and split.images.dtype == torch.float32
    assert split.labels.tolist() == labels * 3
    assert torch.equal(split.images[:n], split.images[2 * n :])
    assert sorted(set(labels)) == list(range(10))
    # MNIST's preparation: white ink on black, at most 1, the ink's centre of mass at the centre
    images = split.images[:n, 0]
    assert float(images.min()) >= 0 and float(images.max()) <= 1
    assert float(images[:, 0].max()) < 0.05 and float(images[:, :, 0].max()) < 0.05  # dark borders
    grid = torch.arange(28, dtype=torch.float32)
    mass = images.sum((1, 2))
    cy = (images.sum(2) * grid).sum(1) / mass
    cx = (images.sum(1) * grid).sum(1) / mass
    assert float((cy - 13.5).abs().median()) < 1.0 and float((cx - 13.5).abs().median()) < 1.0


def test_printed_digits_are_refused_beside_another_data_set() -> None:
    with pytest.raises(ValueError, match="MNIST's training digits only"):
        TrainConfig(dataset="fashion-mnist", printed_digits=2)
    with pytest.raises(ValueError, match="printed_digits"):
        TrainConfig(printed_digits=-1)
    with pytest.raises(DataError, match="gray"):
        printed_training_digits(copies=1, image_shape=(3, 28, 28))


def test_a_run_with_printed_digits_trains_on_them_and_says_so(tiny_mnist: Path, tmp_path: Path) -> None:
    n = len(json.loads((SHEET_FOLDER / f"{SHEET_NAME}.json").read_text())["labels"])
    config = TrainConfig(epochs=1, batch_size=64, device="cpu", printed_digits=2)
    train(TINY_MODEL, config, tmp_path / "printed", data_dir=tiny_mnist, progress=False)
    plain_config = TrainConfig(epochs=1, batch_size=64, device="cpu")
    train(TINY_MODEL, plain_config, tmp_path / "plain", data_dir=tiny_mnist, progress=False)
    printed, plain = (json.loads((tmp_path / name / "config.json").read_text()) for name in ("printed", "plain"))
    assert printed["dataset"]["printed_digits"] == 2 * n and "printed_digits" not in plain["dataset"]
    assert printed["train"]["printed_digits"] == 2
    assert plain["steps_per_epoch"] == 256 // 64 and printed["steps_per_epoch"] == (256 + 2 * n) // 64
    # the final kNN-5 votes among MNIST's own training means, as `evaluate` does, not the printed ones
    model = load_model(tmp_path / "printed")
    mnist_train, mnist_test = load_dataset("mnist", tiny_mnist, download=False)
    (train_mu, _), (test_mu, _) = encode_dataset(model, mnist_train.images), encode_dataset(model, mnist_test.images)
    knn = knn_accuracy(train_mu, mnist_train.labels, test_mu, mnist_test.labels, k=5)
    assert json.loads((tmp_path / "printed" / "metrics.json").read_text())["knn5_accuracy"] == knn
    data, _ = device_data(TINY_MODEL, config, tiny_mnist, torch.device("cpu"))
    assert len(data.train_split) == 256 + 2 * n and torch.equal(data.knn_split.images, mnist_train.images)


def test_a_sheet_reads_back_as_written_and_a_damaged_one_is_refused(tmp_path: Path) -> None:
    images = [Image.new("L", (12, 12), 255 - 20 * i) for i in range(7)]
    write_sheet(tmp_path, "digits", images, list(range(7)), [f"face{i}" for i in range(7)])
    read, labels = read_sheet(tmp_path, "digits")
    assert labels.tolist() == list(range(7))
    assert [np.asarray(a).tolist() for a in read] == [np.asarray(b).tolist() for b in images]
    png = tmp_path / "digits.png"
    png.write_bytes(png.read_bytes()[:40])
    with pytest.raises(DataError, match="cannot read the digit sheet"):
        read_sheet(tmp_path, "digits")
