"""The two measures of how real decodes look: bench/realism.py's critic (a classifier two-sample
test) tells a set apart from real images only when it differs, and bench/sample_quality.py's
Fréchet distance is 0 for a set against itself; both run end to end on a tiny model and its
sharpened sibling."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import realism, sample_quality
from tests.conftest import synthetic_digits


def as_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).float().div(255).unsqueeze(1)


def test_the_critic_is_at_chance_on_real_images_and_certain_on_moved_ones() -> None:
    real_train, real_test = as_tensor(synthetic_digits(512, seed=1)[0]), as_tensor(synthetic_digits(256, seed=2)[0])
    same_train, same_test = as_tensor(synthetic_digits(512, seed=3)[0]), as_tensor(synthetic_digits(256, seed=4)[0])
    recipe = realism.CriticRecipe(epochs=3, width=8)
    # decodes of the same distribution: nothing to learn, held-out accuracy near 0.5
    same = realism.critic_accuracy(real_train, same_train, real_test, same_test, recipe, seed=0)
    assert 0.35 <= same <= 0.65
    # the squares moved off their places: told apart every time
    moved_train, moved_test = same_train.roll(3, dims=3), same_test.roll(3, dims=3)
    moved = realism.critic_accuracy(real_train, moved_train, real_test, moved_test, recipe, seed=0)
    assert moved >= 0.95


def test_the_critics_accuracy_after_each_epoch_is_a_shorter_critics_verdict_at_a_held_rate() -> None:
    real_train, real_test = as_tensor(synthetic_digits(256, seed=1)[0]), as_tensor(synthetic_digits(128, seed=2)[0])
    # moved by one pixel: learnt over several epochs, not in one
    fake_train, fake_test = (as_tensor(synthetic_digits(n, seed=s)[0]).roll(1, dims=3) for n, s in ((256, 3), (128, 4)))
    recipe, by_epoch = realism.CriticRecipe(epochs=3, width=8, lr_schedule="constant"), []
    traced = realism.critic_accuracy(real_train, fake_train, real_test, fake_test, recipe, 0, by_epoch)
    plain = realism.critic_accuracy(real_train, fake_train, real_test, fake_test, recipe, 0)
    assert len(by_epoch) == 3 and by_epoch[-1] == traced == plain and by_epoch[0] < by_epoch[-1]
    # after epoch k: what a critic trained for k epochs at the same rate says
    shorter = realism.CriticRecipe(epochs=1, width=8, lr_schedule="constant")
    assert realism.critic_accuracy(real_train, fake_train, real_test, fake_test, shorter, 0) == by_epoch[0]


def test_the_critics_learning_rate_falls_along_a_cosine_to_zero_by_its_last_step() -> None:
    recipe = realism.CriticRecipe()
    assert (recipe.epochs, recipe.lr_schedule) == (12, "cosine")
    total = 1000
    assert recipe.lr_at(0, total) == recipe.lr
    assert recipe.lr_at(500, total) == pytest.approx(recipe.lr / 2)
    assert recipe.lr_at(999, total) < 1e-5 * recipe.lr
    rates = [recipe.lr_at(step, total) for step in range(total)]
    assert all(a > b for a, b in zip(rates, rates[1:]))
    held = realism.CriticRecipe(lr_schedule="constant")
    assert {held.lr_at(step, total) for step in (0, 500, 999)} == {held.lr}
    with pytest.raises(ValueError, match="lr_schedule is one of cosine, constant"):
        realism.CriticRecipe(lr_schedule="step")
    with pytest.raises(ValueError, match="epochs >= 1"):
        realism.CriticRecipe(epochs=0)


def test_the_yardsticks_soften_real_images_by_a_binomial_blur() -> None:
    dot = torch.zeros(1, 3, 5, 5)
    dot[0, :, 2, 2] = 1.0
    assert torch.equal(realism.softened(dot, realism.AS_THEY_ARE), dot)
    blurred = realism.softened(dot, realism.BLUR)
    # the dot spread over its 3 × 3 neighbourhood by (1 2 1)ᵀ(1 2 1) / 16, in 8-bit steps, per channel
    expected = torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16
    assert torch.allclose(blurred[0, :, 1:4, 1:4], (expected * 255).round() / 255)
    assert blurred.sum(dim=(2, 3)).allclose(torch.ones(1, 3), atol=2 / 255) and blurred[0, :, 0].sum() == 0
    half = realism.softened(dot, realism.HALF_BLUR)
    assert half[0, 0, 2, 2] == pytest.approx(round((1 + 4 / 16) / 2 * 255) / 255)


def test_frechet_distance_is_zero_for_a_set_against_itself_and_grows_with_a_shift() -> None:
    features = np.random.default_rng(0).standard_normal((2000, 6))
    assert sample_quality.frechet_distance(features, features) == pytest.approx(0, abs=1e-6)
    # two Gaussians of equal covariance: the squared distance of their means, 6 × 0.5²
    assert sample_quality.frechet_distance(features, features + 0.5) == pytest.approx(1.5, rel=1e-3)


def test_realism_reports_each_decode_set_for_each_checkpoint(
    tiny_parent: tuple[Path, Path], tiny_sharpened: Path, tmp_path: Path
) -> None:
    folder, data = tiny_parent
    argv = [str(folder), str(tiny_sharpened), "--data-dir", str(data), "--seeds", "2", "--epochs", "1"]
    sets = ["--sets", "mixture,reconstructions", "--yardsticks", "--first-seed", "3"]
    result = realism.main([*argv, *sets, "--name", "tiny", "--out", str(tmp_path)])
    assert result["seeds"] == [3, 4]
    assert list(result["yardsticks"]) == list(realism.YARDSTICKS)
    assert all(len(v) == 2 and all(0 <= a <= 1 for a in v) for v in result["yardsticks"].values())
    for path in (str(folder), str(tiny_sharpened)):
        rows = result["accuracy"][path]
        assert list(rows) == [realism.MIXTURE, realism.RECONSTRUCTIONS]
        assert all(len(v) == 2 and all(0 <= a <= 1 for a in v) for v in rows.values())
        assert result["mean"][path][realism.MIXTURE] == pytest.approx(np.mean(rows[realism.MIXTURE]))
    assert json.loads((tmp_path / "tiny.json").read_text())["accuracy"] == result["accuracy"]
    table = (tmp_path / "tiny.md").read_text()
    assert "mean ± sd over 2 seeds (3–4)" in table
    assert f"| decodes of | {folder.name} | {tiny_sharpened.name} |" in table
    cells = [realism.summary(result["accuracy"][str(p)][realism.MIXTURE]) for p in (folder, tiny_sharpened)]
    assert f"| mixture draws | {cells[0]} | {cells[1]} |" in table
    assert table.count("\n| ") == 3 + 4  # the header and a row per decode set; the yardsticks' too
    assert f"| {realism.BLUR} | {realism.summary(result['yardsticks'][realism.BLUR])} |" in table
    with pytest.raises(SystemExit):
        realism.main([*argv, "--sets", "mixture,dreams", "--out", str(tmp_path)])
    # --by-epoch: each critic's held-out accuracy after every epoch, the last its verdict
    traced = realism.main([*argv[:-1], "2", "--seeds", "1", "--sets", "mixture", "--by-epoch", "--name", "traced",
                           "--out", str(tmp_path)])  # fmt: skip
    trace = traced["by_epoch"][str(tiny_sharpened)][realism.MIXTURE]
    assert (
        len(trace) == 1
        and len(trace[0]) == 2
        and trace[0][-1] == traced["accuracy"][str(tiny_sharpened)][realism.MIXTURE][0]
    )
    assert (
        f"| {tiny_sharpened.name} | {realism.MIXTURE} | {trace[0][0]:.3f} | {trace[0][1]:.3f} |"
        in (tmp_path / "traced.md").read_text()
    )


def test_sample_quality_reports_the_same_latents_through_both_decoders(
    tiny_parent: tuple[Path, Path], tiny_sharpened: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, data = tiny_parent
    argv = ["sample_quality.py", str(folder), str(tiny_sharpened), "--data-dir", str(data), "--samples", "64"]
    monkeypatch.setattr(sys, "argv", [*argv, "--epochs", "1", "--out", str(tmp_path)])
    sample_quality.main()
    result = json.loads((tmp_path / "sample_quality.json").read_text())
    assert result["samples"] == 64 and 0 <= result["classifier_test_accuracy"] <= 1
    for decoder in result["decoders"].values():
        assert len(decoder) == 3  # prior draws, mixture draws, reconstructions
        # a two-epoch model's decodes lie further from the test images than the training images do
        assert all(row["frechet"] > 10 * result["training_images_frechet"] for row in decoder.values())
        shares = [row["class_shares"] for row in decoder.values()]
        assert all(len(s) == 10 and sum(s) == pytest.approx(1) for s in shares)  # MNIST's ten classes
    reconstructions = result["decoders"][str(folder)][sample_quality.RECONSTRUCTIONS]
    assert 0 < reconstructions["mse_per_pixel"] < 1
    table = (tmp_path / "sample_quality.md").read_text()
    assert table.count("\n| ") == 4 and "Test MSE of the reconstructions" in table


def test_training_reconstructions_are_tested_on_training_images_the_critic_never_learned(
    tiny_parent: tuple[Path, Path], tmp_path: Path
) -> None:
    folder, data = tiny_parent
    model = realism.load_checkpoints([str(folder)])[0]
    train, test = realism.checkpoint_data(model, str(data))
    recipe = realism.CriticRecipe(epochs=1, train_images=40, test_images=12)
    train_rows, test_rows = realism.critic_rows(train, test, recipe, seed=0)
    learned, tested = realism.held_out_training_rows(train_rows, test_rows)
    assert len(tested) == len(test_rows) == 12 and len(learned) == len(train_rows) - 12
    assert not set(learned.tolist()) & set(tested.tolist())
    latents = realism.draw_latents(model, realism.TRAINING_RECONSTRUCTIONS, train, test, (train_rows, test_rows), 0)
    means, _ = realism.encoded(model, train, tested)
    assert torch.equal(latents.test_z, means) and len(latents.train_z) == len(learned)
    assert torch.equal(latents.learned_rows, learned)  # the real images the critic learns on leave them out
    # asked for by name only: the default sets stay the three
    sets = ["--sets", "training-reconstructions", "--seeds", "1", "--epochs", "1"]
    result = realism.main([str(folder), "--data-dir", str(data), *sets, "--name", "t", "--out", str(tmp_path)])
    (accuracy,) = result["accuracy"][str(folder)][realism.TRAINING_RECONSTRUCTIONS]
    assert 0 <= accuracy <= 1 and "| reconstructions of training images |" in (tmp_path / "t.md").read_text()
    assert realism.TRAINING_RECONSTRUCTIONS not in realism.DECODE_SETS


def test_realism_refuses_a_critic_without_epochs_in_one_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        realism.main(["checkpoints/none", "--epochs", "0"])
    assert exit_info.value.code == 2
    assert "a critic needs epochs >= 1" in capsys.readouterr().err
