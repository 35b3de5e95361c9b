"""Handwriting's distortions (training/handwriting.py): each does what it says on a known image,
the draws are a pure function of the seed and the epoch, and a run trained on them resumes bit
for bit, kernel by kernel and through the CUDA graph's bookkeeping."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import TINY_MODEL
from training import train as train_module
from training.handwriting import PARAMETERS, Distortion, distort, epoch_distortions
from training.train import TrainConfig, train


def one(**values: float) -> torch.Tensor:
    """The draws (1, PARAMETERS) of one image: the named ones, the rest 0 (no distortion)."""
    order = ("rotation", "scale", "shear", "shift_x", "shift_y", "thickness")
    params = torch.zeros(1, PARAMETERS)
    for name, value in values.items():
        params[0, order.index(name)] = value
    return params


def orientation(image: torch.Tensor) -> float:
    """The angle in degrees of an image's main axis of ink (x right, y down), from its moments."""
    ys, xs = torch.meshgrid(torch.arange(image.shape[-2]), torch.arange(image.shape[-1]), indexing="ij")
    w = image[0, 0].double()
    mx, my = (w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()
    cxx, cyy, cxy = (w * (xs - mx) ** 2).sum(), (w * (ys - my) ** 2).sum(), (w * (xs - mx) * (ys - my)).sum()
    return math.degrees(0.5 * math.atan2(2 * float(cxy), float(cxx - cyy)))


def test_a_rotation_turns_a_line_by_its_angle() -> None:
    line = torch.zeros(1, 1, 56, 56)
    line[..., 27:29, 10:46] = 1.0
    assert abs(orientation(line)) < 0.5
    for draw, angle in ((1.0, 30.0), (-0.5, -15.0)):
        turned = distort(line, one(rotation=draw), Distortion(rotation=30))
        assert orientation(turned) == pytest.approx(angle, abs=1.0)
        assert float(turned.sum()) == pytest.approx(float(line.sum()), rel=0.05)  # ink kept, not cut


def test_scale_shear_and_shift_move_a_square_as_said() -> None:
    square = torch.zeros(1, 1, 40, 40)
    square[..., 15:25, 15:25] = 1.0
    grown = distort(square, one(scale=1.0), Distortion(scale=0.2))  # a side of 10 becomes 12
    assert float(grown.sum()) == pytest.approx(144, rel=0.03)
    moved = distort(square, one(shift_x=1.0, shift_y=-0.5), Distortion(shift=4))  # 4 right, 2 up
    assert torch.allclose(moved[..., 13:23, 19:29], torch.ones(10, 10), atol=1e-5)
    slanted = distort(square, one(shear=1.0), Distortion(shear=0.5))  # the bottom row goes right of the top
    rows = slanted[0, 0]
    centre = lambda r: float((rows[r] * torch.arange(40)).sum() / rows[r].sum())  # noqa: E731
    assert centre(23) - centre(16) == pytest.approx(0.5 * 7, abs=0.3)


def test_thickness_grows_a_stroke_by_a_pixel_each_side() -> None:
    stroke = torch.zeros(1, 1, 28, 28)
    stroke[..., 4:24, 13] = 1.0  # one pixel wide
    thick = distort(stroke, one(thickness=1.0), Distortion(thickness=1.0))
    assert (thick[0, 0, 10] > 0.99).nonzero().flatten().tolist() == [12, 13, 14]  # three wide
    thin = distort(thick, one(thickness=-1.0), Distortion(thickness=1.0))  # thinned by half an erosion
    assert float(thin.sum()) < float(thick.sum())


def test_elastic_displacement_stays_within_its_size() -> None:
    dot = torch.zeros(1, 1, 28, 28)
    dot[..., 14, 14] = 1.0
    params = epoch_distortions(Distortion(elastic=2.0), seed=0, epoch=0, n=64)
    moved = distort(dot.expand(64, -1, -1, -1), params, Distortion(elastic=2.0))
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    weight = moved[:, 0].sum(dim=(1, 2))
    shift = torch.stack([(moved[:, 0] * xs).sum((1, 2)) / weight - 14, (moved[:, 0] * ys).sum((1, 2)) / weight - 14])
    assert float(shift.abs().max()) <= 2.0 * 1.25  # bicubic interpolation overshoots its grid a little
    assert float(shift.abs().mean()) > 0.2  # and it does move


def test_the_draws_are_a_pure_function_of_the_seed_and_the_epoch() -> None:
    d = Distortion(rotation=10, elastic=1.0)
    assert torch.equal(epoch_distortions(d, 3, 5, 100), epoch_distortions(d, 3, 5, 100))
    assert not torch.equal(epoch_distortions(d, 3, 5, 100), epoch_distortions(d, 3, 6, 100))
    assert not torch.equal(epoch_distortions(d, 3, 5, 100), epoch_distortions(d, 4, 5, 100))
    draws = epoch_distortions(d, 0, 0, 10_000)
    assert draws.min() >= -1 and draws.max() <= 1 and abs(float(draws.mean())) < 0.02


def test_distortions_are_refused_out_of_range() -> None:
    with pytest.raises(ValueError, match="scale distortion must be below 1"):
        TrainConfig(distort_scale=1.5)
    with pytest.raises(ValueError, match="rotation distortion must be 0 or a positive number"):
        TrainConfig(distort_rotation=-3)


HANDWRITING = dict(distort_rotation=12, distort_scale=0.1, distort_shear=0.2, distort_shift=2, distort_thickness=0.5)


@pytest.mark.parametrize("graphed", [False, True], ids=["kernel by kernel", "graph bookkeeping"])
def test_a_distorted_run_resumed_mid_epoch_ends_where_one_run_does(
    tiny_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, graphed: bool
) -> None:
    if graphed:  # GraphedSteps run eagerly on the CPU, as tests/test_graphed.py does
        monkeypatch.setattr(train_module, "use_graphed_steps", lambda config, device, processes: True)
    config = TrainConfig(
        epochs=2, batch_size=32, lr_schedule="constant", device="cpu", distort_elastic=1.5, **HANDWRITING
    )
    train(TINY_MODEL, config, tmp_path / "straight", data_dir=tiny_mnist, progress=False)
    train(TINY_MODEL, replace(config, max_steps=5), tmp_path / "split", data_dir=tiny_mnist, progress=False)
    train(TINY_MODEL, config, tmp_path / "split", data_dir=tiny_mnist, resume=True, progress=False)
    plain = TrainConfig(epochs=2, batch_size=32, lr_schedule="constant", device="cpu")
    train(TINY_MODEL, plain, tmp_path / "plain", data_dir=tiny_mnist, progress=False)
    straight, split, undistorted = (
        load_file(tmp_path / n / "model.safetensors") for n in ("straight", "split", "plain")
    )
    assert all(torch.equal(straight[k], split[k]) for k in straight)
    assert any(not torch.equal(straight[k], undistorted[k]) for k in straight)  # the distortions did train
