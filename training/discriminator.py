"""The discriminator that sharpens a decoder (training/sharpen.py), and its R1 penalty.

    disc = Discriminator(channels=1, width=32, num_classes=0)
    logits, features = disc(x, y)   # x (N, C, H, W) in [0, 1] -> (N, P + 1) logits, (N, F)

A 3 × 3 convolution at full resolution, which sees the sharpness of edges, then three 4 × 4
convolutions of stride 2 (DCGAN's body). Two heads read the last feature map: a logit per patch
(PatchGAN, Isola et al. 2017, as taming-transformers' discriminator: many local verdicts per
image, which a small training set cannot be learnt from by heart as easily as one) and one for
the whole image, from the map pooled to 4 × 4, which judges the shape. For a conditional model
each logit gains <embed(y), its features>, the projection discriminator's class term (Miyato &
Koyama 2018). No normalisation layers: their batch statistics would mix real and decoded images,
and the R1 penalty keeps the gradients in check instead (Mescheder et al. 2018).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

POOLED = 4  # side of the pooled feature map the whole-image head reads


class Discriminator(nn.Module):
    """forward: x (N, C, H, W) in [0, 1], y (N,) or None -> (logits (N, P + 1): one per patch of
    the last feature map and one for the image; features (N, 4·WIDTH·16), the pooled map, for
    the feature-matching term)."""

    def __init__(self, channels: int, width: int, num_classes: int = 0) -> None:
        super().__init__()
        widths = (width, 2 * width, 4 * width, 4 * width)
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 3, padding=1), nn.LeakyReLU(0.2)]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers)
        self.patch_head = nn.Conv2d(widths[-1], 1, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(POOLED)
        self.image_head = nn.Linear(widths[-1] * POOLED * POOLED, 1)
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes, widths[-1]) if num_classes else None

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        features = self.body(x * 2 - 1)  # (N, F, h, w)
        pooled = self.pool(features)  # (N, F, 4, 4)
        patches = self.patch_head(features).flatten(1)  # (N, h·w)
        image = self.image_head(pooled.flatten(1))  # (N, 1)
        if self.embed is not None:
            if y is None:
                raise ValueError("a class-conditional discriminator needs the labels y (N,)")
            embedded = self.embed(y.long())  # (N, F)
            patches = patches + torch.einsum("nf,nfhw->nhw", embedded, features).flatten(1)
            image = image + (embedded * pooled.mean(dim=(2, 3))).sum(1, keepdim=True)
        return torch.cat([patches, image], dim=1), pooled.flatten(1)


def r1_penalty(disc: Discriminator, real: Tensor, y: Tensor | None, augment: Callable[[Tensor], Tensor]) -> Tensor:
    """Mescheder et al. 2018's R1: E ‖∇_x D(x)‖² over real images X (N, C, H, W), D(x) the
    mean of an image's logits, AUGMENT applied as in the discriminator's own step (a function
    of the images). Its gradient flows to the discriminator (create_graph)."""
    real = real.detach().requires_grad_(True)
    logits, _ = disc(augment(real), y)
    (grad,) = torch.autograd.grad(logits.mean(dim=1).sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(dim=1).mean()
