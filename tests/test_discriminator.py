"""The sharpening discriminator (training/discriminator.py): patch verdicts at two scales, and a
projection discriminator's class term for a conditional model."""

from __future__ import annotations

import pytest
import torch

from training.discriminator import Discriminator


@pytest.mark.parametrize(("channels", "side", "patches"), [(1, 28, 7 * 7 + 3 * 3), (3, 64, 16 * 16 + 8 * 8)])
def test_each_scale_judges_patches(channels: int, side: int, patches: int) -> None:
    disc = Discriminator(channels, width=8)
    logits, features = disc(torch.rand(5, channels, side, side))
    assert logits.shape == (5, patches)  # a quarter of the side at full scale, about an eighth at half
    assert features.shape == (5, 32 * (side // 4) ** 2)
    # a patch's verdict depends on its neighbourhood alone: changing a corner leaves the far corner's
    x = torch.rand(1, channels, side, side)
    changed = x.clone()
    changed[..., :4, :4] = 1 - changed[..., :4, :4]
    full = side // 4
    before, after = disc(x)[0][0, : full * full], disc(changed)[0][0, : full * full]
    assert before[0] != after[0] and before[-1] == after[-1]


def test_the_projection_discriminator_judges_the_image_with_its_class() -> None:
    torch.manual_seed(0)
    disc = Discriminator(1, width=8, num_classes=10)
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        disc.embed[0].weight.normal_()
        disc.embed[1].weight.normal_()
    same = disc(x, torch.tensor([3, 3, 3, 3]))[0]
    other = disc(x, torch.tensor([3, 5, 3, 5]))[0]
    assert torch.equal(same[0], other[0]) and not torch.allclose(same[1], other[1])
    with pytest.raises(ValueError, match="needs the labels"):
        disc(x)
