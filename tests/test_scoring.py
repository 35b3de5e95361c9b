"""`python -m training score`: a user's own images ranked by anomaly score (training/scoring.py)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_images

import training
from explorer.anomaly import percentile_among_test_set, score_image
from explorer.atlas import load_atlas
from tests.conftest import ENV, ROOT
from training.anomaly import reconstruct
from training.images import model_input, open_image
from training.scoring import atlas_scores, contact_sheet, score_files

BUNDLED = ROOT / "checkpoints" / "mnist-z8"
CVAE = ROOT / "checkpoints" / "mnist-cvae-z8"
RGB = ROOT / "checkpoints" / "emoji-rgb-z8"


def decoded_digits(folder: Path, count: int) -> list[Path]:
    """COUNT in-distribution images: the bundled model's own decodings of encoded test means,
    saved as PNGs (no data set needed)."""
    model = training.load_model(BUNDLED)
    means = load_atlas(str(BUNDLED), model.config.latent_dim).means[:count]
    with torch.inference_mode():
        images = model.decode(torch.from_numpy(np.array(means)))[:, 0].numpy()  # the atlas is read-only
    folder.mkdir(parents=True)
    paths = []
    for i, image in enumerate(images):
        paths.append(folder / f"digit-{i:02d}.png")
        Image.fromarray((image * 255).round().astype(np.uint8)).save(paths[-1])
    return paths


def oddities(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True)
    paths = {"noise": folder / "noise.png", "photo": folder / "photo.jpg", "blank": folder / "blank.png"}
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(paths["noise"])
    Image.fromarray(load_sample_images().images[0]).save(paths["photo"])
    Image.new("L", (60, 60), 255).save(paths["blank"])  # white paper, no ink
    return paths


def run_score(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "training", "score", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )


def test_score_ranks_oddities_first_writes_csv_and_sheet_and_agrees_with_the_page(tmp_path: Path) -> None:
    digits = decoded_digits(tmp_path / "images" / "digits", 12)
    odd = oddities(tmp_path / "images" / "odd")
    out_csv, sheet = tmp_path / "scores.csv", tmp_path / "worst.png"
    run = run_score(
        str(BUNDLED), str(tmp_path / "images"), "--csv", str(out_csv), "--sheet", str(sheet), "--top", "3", "--json"
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    ranked = report["ranked"]
    assert report["images"] == 15 and report["method"] == "complexity" and report["atlas_scores"]
    scores = [r["score_nats"] for r in ranked]
    assert scores == sorted(scores, reverse=True)
    by_name = {Path(r["file"]).name: r for r in ranked}
    # the noise and the photograph rank above every digit the model drew itself
    assert {Path(r["file"]).stem for r in ranked[:2]} == {"noise", "photo"}
    assert by_name["noise.png"]["test_set_below_percent"] > 99.5
    # the model's own decodes score like typical test digits: half of them below the test set's
    # 80th percentile, none in its top 1%, where the noise is
    percentiles = [by_name[p.name]["test_set_below_percent"] for p in digits]
    assert np.median(percentiles) < 80 and max(percentiles) < 99
    assert by_name["blank.png"]["blank"] and not by_name["noise.png"]["blank"]
    for r in ranked:
        assert r["score_nats"] == pytest.approx(r["neg_elbo_minus_complexity_nats"])

    # the CSV holds every image, in rank order, with the JSON's figures
    with out_csv.open() as f:
        rows = list(csv.DictReader(f))
    assert [row["file"] for row in rows] == [r["file"] for r in ranked]
    assert [int(row["rank"]) for row in rows] == list(range(1, 16))
    assert float(rows[0]["score_nats"]) == pytest.approx(scores[0], abs=1e-3)

    # the sheet: three cells of (input | reconstruction), 84-px images; the first cell's input is
    # the noise as the model saw it (MNIST's recipe), upscaled three times
    picture = np.asarray(Image.open(sheet).convert("L"))
    assert picture.shape == (8 + 84 + 34 + 8, 8 + 3 * (2 * 84 + 8))
    model = training.load_model(BUNDLED)
    seen = model_input(open_image(odd["noise"], "noise", "L"), 1, 28, digits=True)[0]
    expected = np.kron((seen * 255).round(), np.ones((3, 3)))
    assert np.abs(picture[8 : 8 + 84, 8 : 8 + 84].astype(float) - expected).max() <= 1

    # the page's anomaly view gives the same score and percentile for the same file
    atlas = load_atlas(str(BUNDLED), model.config.latent_dim)
    for path in (odd["noise"], digits[0]):
        page = score_image(model, model_input(open_image(path, path.name, "L"), 1, 28, digits=True))
        assert page.score == pytest.approx(by_name[path.name]["score_nats"], abs=0.05)
        assert percentile_among_test_set(atlas, page.score) == pytest.approx(
            by_name[path.name]["test_set_below_percent"], abs=0.05
        )


def test_score_by_plain_elbo_uses_the_atlas_elbo_scores(tmp_path: Path) -> None:
    oddities(tmp_path / "odd")
    run = run_score(str(BUNDLED), str(tmp_path / "odd" / "noise.png"), "--method", "elbo", "--json")
    assert run.returncode == 0, run.stderr
    (noise,) = json.loads(run.stdout)["ranked"]
    assert noise["score_nats"] == pytest.approx(noise["neg_elbo_nats"])
    atlas_elbo = atlas_scores(BUNDLED, "elbo")
    assert noise["test_set_below_percent"] == pytest.approx((atlas_elbo < noise["score_nats"]).mean() * 100)


def test_score_refuses_bad_paths_and_files_in_one_line(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    Image.new("L", (28, 28)).save(images / "fine.png")
    (images / "broken.png").write_bytes(b"this is not a PNG")
    cases = {
        (str(tmp_path / "nowhere"),): "nowhere: no such file or folder",
        (str(images / "broken.png"),): "broken.png: is not a readable PNG or JPEG image",
        (str(images), "--csv", str(tmp_path / "missing" / "out.csv")): "does not exist",
        (str(images), "--sheet", str(tmp_path / "out.jpg")): "must end in .png",
        (str(images), "--sheet", str(tmp_path / "out.png"), "--top", "500"): "at most 200 images",
    }
    for args, message in cases.items():
        run = run_score(str(BUNDLED), *args, "--quiet")
        assert run.returncode == 2, (args, run.stdout, run.stderr)
        assert run.stderr.count("\n") == 1 and message in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert not (tmp_path / "out.jpg").exists() and not (tmp_path / "out.png").exists()


def test_unreadable_files_are_named_and_the_rest_still_ranked(tmp_path: Path) -> None:
    # one corrupt scan in a folder of thousands must not cost the user the whole ranking
    folder = tmp_path / "scans"
    digits = decoded_digits(folder / "digits", 3)
    odd = oddities(folder / "odd")
    (folder / "broken.png").write_bytes(b"this is not a PNG")
    Image.new("1", (10_000, 10_000)).save(folder / "bomb.png")  # 100 megapixels in a few KB
    csv_path = tmp_path / "scores.csv"
    run = run_score(str(BUNDLED), str(folder), "--csv", str(csv_path), "--json")
    assert run.returncode == 1, run.stderr
    result = json.loads(run.stdout)
    assert sorted(Path(r["file"]).name for r in result["ranked"]) == sorted(p.name for p in [*digits, *odd.values()])
    assert result["ranked"][0]["file"] == str(odd["noise"])
    assert {Path(u["file"]).name: u["error"] for u in result["unreadable"]} == {
        "bomb.png": f"{folder / 'bomb.png'}: is 10000×10000 pixels, over the 40-megapixel limit; shrink it first.",
        "broken.png": f"{folder / 'broken.png'}: is not a readable PNG or JPEG image (checked by its content, "
        "not its name).",
    }
    with open(csv_path) as f:
        assert len(list(csv.DictReader(f))) == 6  # the readable ones, ranked
    assert run.stderr.splitlines() == [
        "2 of 8 files could not be scored and are not ranked:",
        *(f"  {u['error']}" for u in result["unreadable"]),
    ]
    # the table says the same, after the ranking
    table = run_score(str(BUNDLED), str(folder), "--quiet")
    assert table.returncode == 1 and "6 images scored" in table.stdout and "Traceback" not in table.stderr
    assert table.stderr.splitlines()[0] == "2 of 8 files could not be scored and are not ranked:"
    # none readable: one line, as for a single file
    only_bad = run_score(str(BUNDLED), str(folder / "broken.png"), str(folder / "bomb.png"), "--quiet")
    assert only_bad.returncode == 2 and only_bad.stderr.count("\n") == 1
    assert only_bad.stderr.startswith("error: none of the 2 files could be scored; the first: ")


def test_a_conditional_model_reconstructs_with_the_class_that_explains_the_image(tmp_path: Path) -> None:
    model = training.load_model(CVAE)
    classes = torch.arange(10)
    with torch.inference_mode():  # one typical image of each digit, drawn by the model itself
        x = model.decode(torch.zeros(10, model.config.latent_dim), classes)
    # with the wrong class the decoder would draw another digit; with the best one, the input
    error = (reconstruct(model, x)[2] - x).pow(2).mean(dim=(1, 2, 3))
    assert error.max() < 0.01, error
    # a checkpoint without an atlas: scores, no percentiles, and a sheet all the same
    bare = tmp_path / "cvae"
    shutil.copytree(CVAE, bare, ignore=shutil.ignore_patterns("atlas.safetensors"))
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray((x[i, 0].numpy() * 255).round().astype(np.uint8)).save(paths[-1])
    assert atlas_scores(bare) is None
    ranked = score_files(model, paths, test_scores=atlas_scores(bare)).ranked
    assert len(ranked) == 3 and all(r.percentile is None and np.isfinite(r.score) for r in ranked)
    assert contact_sheet(model, ranked).size == (8 + 3 * (2 * 84 + 8), 8 + 84 + 34 + 8)


def test_an_rgb_model_scores_photographs_as_it_was_trained_and_shows_them_in_colour(tmp_path: Path) -> None:
    from training.evaluate import load_for_batches

    model = load_for_batches(RGB)
    photo = load_sample_images().images[1]  # flower.jpg, 427 × 640
    paths = []
    for i, (top, left) in enumerate([(0, 0), (100, 200), (300, 500)]):
        paths.append(tmp_path / f"patch-{i}.png")
        Image.fromarray(photo[top : top + 100, left : left + 120]).save(paths[-1])  # not square, not 64 px
    ranked = score_files(model, paths, test_scores=atlas_scores(RGB)).ranked
    assert len(ranked) == 3 and all(0 <= r.percentile <= 100 and not r.blank for r in ranked)
    sheet = np.asarray(contact_sheet(model, ranked[:1]))
    assert sheet.shape == (8 + 128 + 34 + 8, 8 + 2 * 128 + 8, 3)  # 64-px images shown at 128
    # the input tile: the centred 100 × 100 square resized to 64, as --dataset folder made the
    # training images, upscaled twice; in colour, channels in order
    seen = model_input(open_image(ranked[0].path, "patch", "RGB"), 3, 64, digits=False)
    expected = np.kron((seen.transpose(1, 2, 0) * 255).round(), np.ones((2, 2, 1)))
    assert np.abs(sheet[8 : 8 + 128, 8 : 8 + 128].astype(float) - expected).max() <= 1


def test_a_broken_atlas_is_named_with_what_to_do(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    shutil.copytree(BUNDLED, folder)
    (folder / "atlas.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(training.CheckpointError, match="rebuild it with `python -m training atlas"):
        atlas_scores(folder)
