"""The sharpening discriminator (training/discriminator.py): a verdict per patch and one for the
whole image, and a projection discriminator's class term for a conditional model."""

from __future__ import annotations

import pytest
import torch

from training.discriminator import Discriminator


@pytest.mark.parametrize(("channels", "side", "patches"), [(1, 28, 3 * 3), (3, 64, 8 * 8)])
def test_it_judges_each_patch_and_the_whole_image(channels: int, side: int, patches: int) -> None:
    disc = Discriminator(channels, width=8)
    logits, features = disc(torch.rand(5, channels, side, side))
    assert logits.shape == (5, patches + 1)  # the last map's patches (three halvings), then the image
    assert features.shape == (5, 32 * 4 * 4)  # the last map pooled to 4 × 4
    x = torch.rand(1, channels, side, side)
    changed = x.clone()
    changed[..., :4, :4] = 1 - changed[..., :4, :4]
    before, after = disc(x)[0][0], disc(changed)[0][0]
    assert before[0] != after[0] and before[-1] != after[-1]  # the corner's patch and the whole image see it
    if side == 64:  # a patch sees 40 pixels around it: the far corner's does not
        assert before[patches - 1] == after[patches - 1]


def test_the_projection_discriminator_judges_the_image_with_its_class() -> None:
    torch.manual_seed(0)
    disc = Discriminator(1, width=8, num_classes=10)
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        disc.embed.weight.normal_()
    same = disc(x, torch.tensor([3, 3, 3, 3]))[0]
    other = disc(x, torch.tensor([3, 5, 3, 5]))[0]
    assert torch.equal(same[0], other[0]) and not torch.allclose(same[1], other[1])
    with pytest.raises(ValueError, match="needs the labels"):
        disc(x)
