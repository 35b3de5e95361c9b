"""Differentiable augmentation for a discriminator trained on few images (DiffAugment, Zhao et
al. 2020): random colour, translation and cutout, drawn alike for real and decoded images, so
the discriminator cannot learn the training set by heart and keeps teaching; the decoder's
gradient flows through the augmentation. Each image is augmented with probability P (each
augmentation drawn apart), which the sharpening loop adapts to how much the discriminator
overfits, as StyleGAN2-ADA does (Karras et al. 2020): P = 1 is DiffAugment's always.

    x_aug = diff_augment(x, ("color", "translation", "cutout"), generator, p)   # (N, C, H, W) -> same

Every draw comes from GENERATOR (on the CPU), so a resumed run augments as the uninterrupted
one would.
"""

from __future__ import annotations

import torch
from torch import Tensor

POLICIES = ("color", "translation", "cutout")
TRANSLATION = 1 / 8  # the largest shift, as a share of the side (the paper's)
CUTOUT = 1 / 2  # the side of the square cut out, as a share of the image's
FILL = 0.5  # what translation uncovers and cutout leaves: the paper's zero, on images in [-1, 1]


def _uniform(n: int, generator: torch.Generator, like: Tensor) -> Tensor:
    """(N, 1, 1, 1) uniform draws in [0, 1) on LIKE's device and dtype."""
    return torch.rand(n, 1, 1, 1, generator=generator).to(like.device, like.dtype)


def color(x: Tensor, generator: torch.Generator) -> Tensor:
    """Brightness ± 0.5, saturation × [0, 2] (colour images) and contrast × [0.5, 1.5], per image."""
    n = len(x)
    x = x + (_uniform(n, generator, x) - 0.5)
    if x.shape[1] == 3:
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (_uniform(n, generator, x) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(n, generator, x) + 0.5) + mean


def translation(x: Tensor, generator: torch.Generator) -> Tensor:
    """Each image shifted by whole pixels, up to TRANSLATION of its side either way; the
    uncovered border is FILL."""
    n, c, h, w = x.shape
    sh, sw = int(h * TRANSLATION + 0.5), int(w * TRANSLATION + 0.5)
    dy = torch.randint(-sh, sh + 1, (n, 1, 1), generator=generator).to(x.device)
    dx = torch.randint(-sw, sw + 1, (n, 1, 1), generator=generator).to(x.device)
    # source pixel of each output pixel in a copy with a one-pixel FILL border
    rows = (torch.arange(h, device=x.device).view(1, h, 1) - dy).clamp(-1, h) + 1
    cols = (torch.arange(w, device=x.device).view(1, 1, w) - dx).clamp(-1, w) + 1
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), value=FILL)
    index = (rows * (w + 2) + cols).view(n, 1, h * w).expand(-1, c, -1)
    return padded.flatten(2).gather(2, index).view_as(x)


def cutout(x: Tensor, generator: torch.Generator) -> Tensor:
    """A square of CUTOUT of the side, centred at a random pixel of each image, set to FILL."""
    n, _, h, w = x.shape
    ch, cw = int(h * CUTOUT + 0.5), int(w * CUTOUT + 0.5)
    top = torch.randint(0, h + 1 - ch % 2, (n, 1, 1), generator=generator).to(x.device) - ch // 2
    left = torch.randint(0, w + 1 - cw % 2, (n, 1, 1), generator=generator).to(x.device) - cw // 2
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)  # (N, H, W)
    return x.masked_fill(inside.unsqueeze(1), FILL)


AUGMENTATIONS = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(x: Tensor, policy: tuple[str, ...], generator: torch.Generator, p: float = 1.0) -> Tensor:
    """X (N, C, H, W) through the augmentations named in POLICY, in that order, each applied to
    an image with probability P (the draws are made whatever P is, so that the generator's
    sequence does not depend on it)."""
    for name in policy:
        augmented = AUGMENTATIONS[name](x, generator)
        chosen = _uniform(len(x), generator, x) < p
        x = torch.where(chosen, augmented, x)
    return x
