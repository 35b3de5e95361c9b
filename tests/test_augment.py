"""DiffAugment (training/augment.py): each augmentation does what it says on known images, is
seeded, and lets the gradient through."""

from __future__ import annotations

import torch

from training.augment import CUTOUT, FILL, POLICIES, TRANSLATION, color, cutout, diff_augment, translation


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_translation_shifts_each_image_whole_within_an_eighth_and_fills_the_border() -> None:
    x = torch.zeros(64, 1, 16, 16)
    x[:, 0, 8, 8] = 1.0  # one bright pixel in the middle of each image
    x[:, 0, 6, 5] = 0.25
    moved = translation(x, seeded())
    limit = round(16 * TRANSLATION)
    shifts = set()
    for image in moved[:, 0]:
        (row, col), *_ = (image == 1.0).nonzero().tolist()
        dy, dx = row - 8, col - 8
        assert abs(dy) <= limit and abs(dx) <= limit
        assert image[6 + dy, 5 + dx] == 0.25  # the whole image moved by the same shift
        expected = torch.roll(x[0, 0], (dy, dx), dims=(0, 1))
        inside = (slice(max(dy, 0), 16 + min(dy, 0)), slice(max(dx, 0), 16 + min(dx, 0)))
        assert torch.equal(image[inside], expected[inside])
        uncovered = torch.ones(16, 16, dtype=torch.bool)
        uncovered[inside] = False
        assert (image[uncovered] == FILL).all()
        shifts.add((dy, dx))
    assert len(shifts) > 10  # a shift per image, not one for the batch


def test_cutout_blanks_one_square_of_half_the_side() -> None:
    x = torch.ones(32, 3, 16, 16)
    out = cutout(x, seeded())
    side = round(16 * CUTOUT)
    for image in out:
        blank = (image == FILL).all(dim=0)
        rows, cols = blank.nonzero().unbind(1)
        # a square of SIDE, clipped where it runs off the image
        height, width = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert height <= side and width <= side and int(blank.sum()) == height * width
        assert (image[:, ~blank] == 1).all()
    assert int((out == FILL).all(dim=1).sum(dim=(1, 2)).max()) == side * side


def test_color_changes_brightness_saturation_and_contrast_per_image() -> None:
    gray = torch.full((16, 1, 8, 8), 0.5)
    shifted = color(gray, seeded())
    # a flat image keeps its flatness and moves by the brightness offset alone, within ±0.5
    assert torch.allclose(shifted, shifted[:, :, :1, :1].expand_as(shifted))
    offsets = shifted[:, 0, 0, 0] - 0.5
    assert (offsets.abs() <= 0.5).all() and offsets.std() > 0.1
    # contrast: the deviations from an image's mean scale by one factor in [0.5, 1.5]
    ramp = torch.linspace(0, 1, 64).view(1, 1, 8, 8).repeat(16, 1, 1, 1)
    out = color(ramp, seeded(1))
    ratio = (out - out.mean(dim=(1, 2, 3), keepdim=True)) / (ramp - ramp.mean(dim=(1, 2, 3), keepdim=True))
    per_image = ratio.flatten(1)
    assert torch.allclose(per_image, per_image[:, :1].expand_as(per_image), atol=1e-4)
    assert ((per_image[:, 0] >= 0.5 - 1e-5) & (per_image[:, 0] <= 1.5 + 1e-5)).all()


def test_the_same_seed_gives_the_same_augmentation() -> None:
    x = torch.rand(8, 3, 16, 16)
    assert torch.equal(diff_augment(x, POLICIES, seeded(3)), diff_augment(x, POLICIES, seeded(3)))
    assert not torch.equal(diff_augment(x, POLICIES, seeded(3)), diff_augment(x, POLICIES, seeded(4)))


def test_the_gradient_flows_through_every_augmentation() -> None:
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    weights = torch.rand(4, 3, 16, 16)
    (diff_augment(x, POLICIES, seeded()) * weights).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # translation alone moves pixels: each input pixel's gradient is the weight where it landed, or 0
    y = torch.rand(2, 1, 8, 8, requires_grad=True)
    translation(y, seeded()).sum().backward()
    assert set(y.grad.unique().tolist()) <= {0.0, 1.0}
