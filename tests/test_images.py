"""Image-folder data sets (training/images.py) and `--dataset folder` end to end."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import training
from tests.conftest import ENV, ROOT, make_folder
from training import images as images_module
from training.data import DataError, load_data
from training.images import MAX_PIXELS, find_images, load_image, load_image_folder


def test_classes_come_from_subfolders(tmp_path: Path) -> None:
    files, labels, names = find_images(make_folder(tmp_path / "art"))
    assert names == ("blues", "reds") and len(files) == 24
    assert labels.tolist() == [0] * 12 + [1] * 12
    (tmp_path / "flat").mkdir()
    Image.new("L", (10, 10)).save(tmp_path / "flat" / "a.png")
    Image.new("L", (10, 10)).save(tmp_path / "flat" / "b.PNG")
    assert find_images(tmp_path / "flat")[2] == ("flat",)


def test_images_are_cropped_resized_and_split(tmp_path: Path) -> None:
    train, test, names = load_image_folder(make_folder(tmp_path / "art"), image_size=16, channels=3, seed=0)
    assert train.images.shape == (22, 3, 16, 16) and test.images.shape == (2, 3, 16, 16)
    assert train.images.dtype == torch.float32 and 0 <= train.images.min() and train.images.max() <= 1
    reds = train.images[train.labels == 1]
    assert (reds[:, 0].mean() > 0.7) and (reds[:, 2].mean() < 0.25)  # colour kept, channel order RGB
    again = load_image_folder(tmp_path / "art", image_size=16, channels=3, seed=0)[1]
    assert torch.equal(again.images, test.images)  # the same split for every command
    gray = load_image(tmp_path / "art" / "reds" / "000.png", image_size=8, channels=1)
    assert gray.shape == (8, 8, 1) and gray.dtype == np.uint8


@pytest.mark.parametrize("case", ["empty", "corrupt", "truncated", "not-an-image", "bomb"])
def test_a_bad_file_is_named_with_its_problem(tmp_path: Path, case: str) -> None:
    folder = make_folder(tmp_path / "art", per_class=3)
    bad = folder / "reds" / "bad.png"
    if case == "empty":
        bad.write_bytes(b"")
    elif case == "corrupt":
        bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    elif case == "truncated":
        good = (folder / "reds" / "000.png").read_bytes()
        bad.write_bytes(good[: len(good) // 2])
    elif case == "not-an-image":  # a GIF named .png: the type comes from the content
        Image.new("RGB", (20, 20)).save(bad, format="GIF")
    else:  # 100 megapixels that compress to almost nothing: refused before decoding
        Image.new("1", (10_000, 10_000)).save(bad)
        assert bad.stat().st_size < 100_000 and 10_000 * 10_000 > MAX_PIXELS
    with pytest.raises(DataError) as error:
        load_image_folder(folder, image_size=16, channels=3)
    message = str(error.value)
    assert message.startswith(str(bad)) and "\n" not in message
    expected = {
        "empty": "empty",
        "corrupt": "not a readable PNG",
        "truncated": "decoded",
        "not-an-image": "not a readable PNG or JPEG",
        "bomb": "megapixel",
    }[case]
    assert expected in message


def test_a_folder_too_large_for_memory_is_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 24 images of 256 × 256 × 3 need 24 · 196,608 · 9 bytes (42.5 MB) at the loading peak: with
    # 40 MB available the folder is refused, in one line, before a single file is decoded
    folder = make_folder(tmp_path / "art")
    monkeypatch.setattr(images_module, "available_memory", lambda: 40_000_000)
    decoded: list[Path] = []
    real_load = images_module.load_image
    monkeypatch.setattr(images_module, "load_image", lambda path, *args: decoded.append(path) or real_load(path, *args))
    with pytest.raises(DataError) as error:
        load_image_folder(folder, image_size=256, channels=3)
    assert str(error.value) == (
        f"{folder}: 24 images of 256×256×3 need about 42 MB of memory to load, and this "
        "machine has 40 MB available; use a smaller --image-size or fewer images."
    )
    assert decoded == []
    train, test, _ = load_image_folder(folder, image_size=64, channels=3)  # 8.8 MB: loads
    assert len(train) + len(test) == 24 and len(decoded) == 24
    monkeypatch.setattr(images_module, "available_memory", lambda: None)  # not told: not checked
    assert len(load_image_folder(folder, image_size=256, channels=3)[0]) == 22


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a folder"):
        load_data("folder", tmp_path / "missing", (3, 16, 16))
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="no .png or .jpg"):
        load_data("folder", tmp_path / "none", (3, 16, 16))
    with pytest.raises(DataError, match="needs --data-dir"):
        load_data("folder", None, (3, 16, 16))


def cli(*args: str) -> subprocess.CompletedProcess:
    """`python -m training ARGS`, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "training", *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV
    )


def test_cli_trains_on_a_folder_and_evaluates_and_maps_it(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "art")
    out = tmp_path / "run"
    small = "--image-size 16 --channels 3 --conv-channels 4,8 --hidden-dim 16 --latent-dim 4".split()
    data = ["--dataset", "folder", "--data-dir", str(folder)]
    result = cli("train", *data, "--out", str(out), *small, "--epochs", "2", "--batch-size", "7", "--quiet")
    assert result.returncode == 0, result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"]["name"] == "folder" and config["dataset"]["class_names"] == ["blues", "reds"]
    assert config["dataset"]["path"] == str(folder.resolve()) and config["dataset"]["test_images"] == 2
    model = training.load_model(out)
    assert model.decode(torch.zeros(1, 4)).shape == (1, 3, 16, 16)
    # evaluate finds the images where training read them, with the same split
    result = cli("evaluate", str(out), "--iw-samples", "4", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["test_images"] == 2
    figures = json.loads(result.stdout)
    # the folder moved (the same files): found with --data-dir, the same split and figures
    moved = tmp_path / "moved"
    shutil.copytree(folder, moved)
    result = cli("evaluate", str(out), "--iw-samples", "4", "--json", "--data-dir", str(moved))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["mse_per_pixel"] == figures["mse_per_pixel"]

    # files added, or renamed, since training: another split, which would put training images
    # in the test set; every command that needs the split refuses, in one line
    def refused(message: str) -> None:
        for command in ("evaluate", "atlas"):
            result = cli(command, str(out), "--data-dir", str(moved))
            assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
            assert result.stderr.startswith(f"error: {moved} {message}: its test split cannot be found again")
            assert result.stderr.endswith("with --data-dir, or train again.\n"), result.stderr

    (moved / "blues" / "000.jpg").rename(moved / "blues" / "zzz.jpg")
    refused("holds 24 images, as many as the model was trained on, but under other names")
    Image.new("RGB", (40, 40), (200, 40, 40)).save(moved / "reds" / "new.png")
    refused("holds 25 images, but the model was trained on 24 from it")
    # so does a resumed run, which otherwise finds the folder where it was trained
    result = cli("train", "--out", str(out), "--resume", "--epochs", "3", "--data-dir", str(moved), "--quiet")
    assert result.returncode == 2 and result.stderr.startswith(f"error: {moved} holds 25 images"), result.stderr
    result = cli("train", "--out", str(out), "--resume", "--epochs", "3", "--quiet")
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "state.json").read_text())["step"] == 3 * 3  # 22 training images, batch 7
    assert not (out / "atlas.safetensors").exists()


def test_cli_names_a_corrupt_image_in_one_line(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "art")
    (folder / "blues" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    data = ["--dataset", "folder", "--data-dir", str(folder)]
    result = cli("train", *data, "--out", str(tmp_path / "again"), "--image-size", "16", "--channels", "3", "--quiet")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "broken.jpg" in result.stderr


def test_sample_patches_make_an_rgb_data_set(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "training", "patches", str(tmp_path / "p"), "--size", "64", "--stride", "64"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("wrote 120 patches")  # 6 × 10 per 427 × 640 photograph, two photographs
    files, labels, names = find_images(tmp_path / "p")
    assert names == ("china", "flower") and len(files) == 120
    assert load_image(files[0], 64, 3).shape == (64, 64, 3)

    # the same call again rewrites the same patches; another size or stride, or a folder with
    # anything else in it, would mix files into the data set: refused, nothing written
    def patches(*flags: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "training", "patches", *flags],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env=ENV,
        )

    assert patches(str(tmp_path / "p"), "--size", "64", "--stride", "64").returncode == 0
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png"))
    result = patches(str(tmp_path / "p"), "--size", "64", "--stride", "48")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "p: already holds 104 other files (china/000-064.png, ...), which would join the data set" in result.stderr
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "holiday.jpg").write_bytes(b"a photo")
    result = patches(str(tmp_path / "mine"))
    assert result.returncode == 2 and "mine: already holds 1 other file (holiday.jpg), which" in result.stderr
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png")) == before
