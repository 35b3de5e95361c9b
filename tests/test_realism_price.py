"""bench/realism_price.py: its nearest-K decoder answers a latent with the training images whose
latents are nearest (never a training image with itself, never another class's), and the report
gives each decoder's test MSE beside the critic's accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench import realism, realism_price
from training.data import Split


def test_a_query_in_the_bank_is_answered_by_its_nearest_other_row() -> None:
    bank = torch.tensor([[0.0], [1.0], [1.1], [5.0]])
    assert realism_price.nearest_rows(bank, bank[[1, 3]], k=2).tolist() == [[1, 2], [3, 2]]
    # left out: each query's own row, even where a copy of it sits at the same distance
    bank_with_copy = torch.cat([bank, bank[1:2]])
    answers = realism_price.nearest_rows(bank_with_copy, bank_with_copy[[1, 3]], k=2, own_rows=torch.tensor([1, 3]))
    assert answers.tolist() == [[4, 2], [2, 4]]


def test_the_nearest_k_decoder_answers_with_training_images_and_blurs_as_k_grows() -> None:
    generator = torch.Generator().manual_seed(0)
    train = Split(torch.rand(6, 1, 4, 4, generator=generator), torch.zeros(6, dtype=torch.long))
    test = Split(train.images[[2, 5]].clone(), torch.zeros(2, dtype=torch.long))
    train_keys = torch.tensor([[0.0], [1.0], [2.0], [3.5], [4.0], [5.0]])
    test_keys = torch.tensor([[2.0], [5.0]])  # each test image's latent is its training copy's
    mse = realism_price.nearest_k_mse(train, test, (train_keys, test_keys), ks=[1, 2])
    assert mse[1] == 0.0  # answered with the very image
    # the mean of images 2 and 1, and of 5 and 4: half the difference, squared
    expected = ((train.images[[2, 5]] - train.images[[1, 4]]) / 2).pow(2).mean().item()
    assert mse[2] == pytest.approx(expected, rel=1e-5)


def test_a_conditional_models_nearest_neighbour_is_one_of_its_class() -> None:
    keys = torch.tensor([[0.0, 0.0], [0.1, 0.0], [3.0, 3.0]])
    labels = torch.tensor([0, 1, 1])
    classed = torch.cat([keys, realism_price.CLASS_APART * torch.nn.functional.one_hot(labels, 2)], 1)
    # the point at the origin, asked as class 1, skips the closer point of class 0
    query = torch.cat([torch.tensor([[0.0, 0.0]]), realism_price.CLASS_APART * torch.tensor([[0.0, 1.0]])], 1)
    assert realism_price.nearest_rows(classed, query, k=2).tolist() == [[1, 2]]


def test_the_report_gives_each_decoders_mse_and_critic(
    tiny_parent: tuple[Path, Path], tiny_sharpened: Path, tmp_path: Path
) -> None:
    folder, data = tiny_parent
    argv = [str(folder), str(tiny_sharpened), "--data-dir", str(data), "--seeds", "2", "--epochs", "1", "--k", "2,1"]
    result = realism_price.main([*argv, "--name", "tiny", "--out", str(tmp_path)])
    names = [row["decoder"] for row in result["rows"]]
    assert names == [
        folder.name,
        tiny_sharpened.name,
        "nearest-1: a training image",
        "nearest-2: the mean of 2 training images",
    ]
    assert all(len(row["critic"]) == 2 and all(0 <= a <= 1 for a in row["critic"]) for row in result["rows"])
    # the checkpoint's own MSE, as its training evaluated it
    parent_mse = json.loads((folder / "metrics.json").read_text())["mse_per_pixel"]
    assert result["rows"][0]["test_mse"] == pytest.approx(parent_mse, rel=1e-4)
    # a real image per latent lies further from a test image than the two images' mean does
    assert result["rows"][2]["test_mse"] > result["rows"][3]["test_mse"] > 0
    table = (tmp_path / "tiny.md").read_text()
    assert "mean ± sd over 2 critic seeds (0–1)" in table
    assert table.count("\n| ") == 1 + 4
    nearest = result["rows"][2]
    ratio, critic = nearest["test_mse"] / result["rows"][0]["test_mse"], realism.summary(nearest["critic"])
    assert f"| nearest-1: a training image | {nearest['test_mse']:.5f} | {ratio:.2f} | {critic} |" in table
    with pytest.raises(SystemExit):
        realism_price.main([*argv[:-1], "0", "--out", str(tmp_path)])
