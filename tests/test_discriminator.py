"""The sharpening discriminator (training/discriminator.py): a verdict per patch and one for the
whole image, one per pixel where asked, and a projection discriminator's class term for a
conditional model."""

from __future__ import annotations

import pytest
import torch

from training.discriminator import Discriminator, per_image


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


@pytest.mark.parametrize(("channels", "side"), [(1, 28), (3, 64)])
def test_the_local_head_judges_each_pixel_by_its_7_by_7_neighbourhood(channels: int, side: int) -> None:
    torch.manual_seed(0)
    disc = Discriminator(channels, width=8, local_share=0.25)
    patches = (side // 8) ** 2
    x = torch.rand(2, channels, side, side)
    logits, _ = disc(x)
    assert logits.shape == (2, patches + 1 + side * side)
    changed = x.clone()
    changed[..., 10, 10] = 1 - changed[..., 10, 10]
    local = logits[:, patches + 1 :].reshape(2, side, side)
    local_after = disc(changed)[0][:, patches + 1 :].reshape(2, side, side)
    moved = (local != local_after)[0]
    # the pixels whose 7 × 7 neighbourhood holds (10, 10), and no others
    assert moved[7:14, 7:14].all() and moved.sum() == 49
    # an image's verdict: the patches and the image share 3/4, the pixels 1/4
    weights = disc.logit_weights(side)
    assert weights.sum() == pytest.approx(1.0)
    assert weights[: patches + 1].sum() == pytest.approx(0.75) and weights[patches + 1 :].sum() == pytest.approx(0.25)
    expected = 0.75 * logits[:, : patches + 1].mean(1) + 0.25 * logits[:, patches + 1 :].mean(1)
    assert torch.allclose(per_image(disc, logits), expected, atol=1e-6)
    plain = Discriminator(channels, width=8)
    assert plain.local_head is None and torch.equal(per_image(plain, logits[:, :5]), logits[:, :5].mean(1))
    with pytest.raises(ValueError, match=r"local_share must be in \[0, 1\), got 1.0"):
        Discriminator(channels, width=8, local_share=1.0)
