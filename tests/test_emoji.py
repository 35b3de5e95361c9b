"""The Noto emoji data set (training/emoji.py) on a small stand-in for the npm package's layout:
a few PNGs with alpha and an emoji.json; never the real download. And the variant-aware split
(training/images.py) it relies on."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_cli
from training import emoji
from training.data import DataError
from training.images import find_images, load_image_folder, names_of_test_split, split_rows

# (category, short name, image, skin variations)
STAND_IN = [
    ("Smileys & Emotion", "grinning", "1f600.png", {}),
    ("Smileys & Emotion", "wink", "1f609.png", {}),
    ("People & Body", "wave", "1f44b.png", {"1F3FB": "1f44b-1f3fb.png", "1F3FF": "1f44b-1f3ff.png"}),
    ("People & Body", "ok_hand", "1f44c.png", {"1F3FB": "1f44c-1f3fb.png"}),
    ("Flags", "flag-eg", "1f1ea-1f1ec.png", {}),
    ("Component", "skin-tone-2", "1f3fb.png", {}),
]


def write_package(path: Path) -> Path:
    """A .tgz laid out as emoji-datasource-google: package/emoji.json and package/img/google/64/."""
    entries, pngs = [], {}
    for k, (category, name, image, variations) in enumerate(STAND_IN):
        entries.append(
            {
                "short_name": name,
                "image": image,
                "category": category,
                "has_img_google": True,
                "skin_variations": {tone: {"image": file, "has_img_google": True} for tone, file in variations.items()},
            }
        )
        for j, file in enumerate([image, *variations.values()]):
            # a disc of colour on a transparent square: the alpha must be composited on white
            pixels = np.zeros((64, 64, 4), np.uint8)
            yy, xx = np.mgrid[:64, :64]
            disc = (yy - 32) ** 2 + (xx - 32) ** 2 < 20**2
            pixels[disc] = (40 * k, 200 - 30 * j, 90, 255)
            buffer = io.BytesIO()
            Image.fromarray(pixels, "RGBA").save(buffer, format="PNG")
            pngs[file] = buffer.getvalue()
    entries.append({"short_name": "not_drawn", "image": "x.png", "category": "Objects", "has_img_google": False})
    with tarfile.open(path, "w:gz") as archive:
        for name, data in [(emoji.INDEX, json.dumps(entries).encode())] + [
            (emoji.IMAGES + file, data) for file, data in pngs.items()
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_the_package_becomes_a_folder_per_category_on_white(tmp_path: Path) -> None:
    tarball = write_package(tmp_path / emoji.TARBALL)
    out = tmp_path / "emoji"
    assert emoji.write_emoji_folder(tarball, out) == 8  # 5 emoji and 3 variants; Component and undrawn left out
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert files == [
        "Flags/flag-eg.png",
        "People & Body/ok_hand.png",
        "People & Body/ok_hand~1F3FB.png",
        "People & Body/wave.png",
        "People & Body/wave~1F3FB.png",
        "People & Body/wave~1F3FF.png",
        "Smileys & Emotion/grinning.png",
        "Smileys & Emotion/wink.png",
    ]
    pixels = np.asarray(Image.open(out / "Smileys & Emotion" / "wink.png"))
    assert pixels.shape == (64, 64, 3)
    assert tuple(pixels[0, 0]) == emoji.BACKGROUND and tuple(pixels[32, 32]) == (40, 200, 90)
    _, labels, names = find_images(out)
    assert names == ("Flags", "People & Body", "Smileys & Emotion") and np.bincount(labels).tolist() == [1, 5, 2]
    # written again: nothing changes; beside another file: refused, nothing lost
    assert emoji.write_emoji_folder(tarball, out) == 8
    (out / "Flags" / "mine.png").write_bytes(b"x")
    with pytest.raises(DataError, match="already holds 1 other file"):
        emoji.write_emoji_folder(tarball, out)


def test_variants_of_one_emoji_stay_on_one_side_of_the_split(tmp_path: Path) -> None:
    files = [Path(f"People/{name}.png") for name in ("a", "a~1", "a~2", "a~3", "b", "b~1", "c", "d", "e", "f")]
    for seed in range(20):
        train, test = split_rows(files, seed, test_fraction=0.3)
        assert sorted([*train, *test]) == list(range(10)) and len(test) >= 3 and len(train) >= 1
        groups = [{files[r].stem.split("~")[0] for r in rows} for rows in (train, test)]
        assert not groups[0] & groups[1], seed
    # without variants the split is the seeded permutation of the files it always was
    plain = [Path(f"x/{i:03d}.png") for i in range(50)]
    train, test = split_rows(plain, 4)
    order = np.random.default_rng(4).permutation(50)
    assert test.tolist() == order[:5].tolist() and train.tolist() == order[5:].tolist()


def test_a_folder_of_variants_loads_split_by_emoji_and_names_its_test_images(tmp_path: Path) -> None:
    out = tmp_path / "emoji"
    emoji.write_emoji_folder(write_package(tmp_path / emoji.TARBALL), out)
    train, test, names = load_image_folder(out, 16, 3, test_fraction=0.3)
    assert len(train) + len(test) == 8 and test.images.shape[1:] == (3, 16, 16)
    named = names_of_test_split(out)
    assert len(named) == len(test)
    assert len({name.split("~")[0] for name in named}) <= len(named)


def test_without_npm_or_offline_one_sentence_names_the_package(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(DataError, match=r"npm is not installed.*emoji-datasource-google@16\.0\.0.*install Node"):
        emoji.fetch_package(tmp_path)
    fake_npm = tmp_path / "npm"
    fake_npm.write_text("#!/bin/sh\necho 'npm error code ENOTFOUND registry.npmjs.org' >&2\nexit 1\n")
    fake_npm.chmod(0o755)
    monkeypatch.setattr(shutil, "which", lambda name: str(fake_npm))
    with pytest.raises(
        DataError, match=r"npm pack emoji-datasource-google@16\.0\.0` failed \(npm error code ENOTFOUND"
    ):
        emoji.fetch_package(tmp_path / "cache")
    # a tarball already in the cache is used as is, with no npm at all
    tarball = write_package(tmp_path / "cache" / emoji.TARBALL)
    assert emoji.fetch_package(tmp_path / "cache") == tarball


def test_the_cli_writes_the_folder_from_a_cached_package_and_refuses_a_broken_one(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    write_package(cache / emoji.TARBALL)
    result = run_cli("emoji", str(tmp_path / "out"), "--cache", str(cache))
    assert result.returncode == 0, result.stderr
    assert "wrote 8 emoji" in result.stdout
    (cache / emoji.TARBALL).write_bytes(b"not a tarball")
    result = run_cli("emoji", str(tmp_path / "out2"), "--cache", str(cache))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "is not a readable .tgz" in result.stderr and "Traceback" not in result.stderr
