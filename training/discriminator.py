"""The discriminator that sharpens a decoder (training/sharpen.py), and its R1 penalty.

    disc = Discriminator(channels=1, width=32, num_classes=0, local_share=0.5)
    logits, features = disc(x, y)   # x (N, C, H, W) in [0, 1] -> (N, P + 1 + H·W) logits, (N, F)
    verdicts = per_image(disc, logits)   # (N,): the logits' mean, each head given its share

A 3 × 3 convolution at full resolution, which sees the sharpness of edges, then three 4 × 4
convolutions of stride 2 (DCGAN's body). Two heads read the last feature map: a logit per patch
(PatchGAN, Isola et al. 2017, as taming-transformers' discriminator: many local verdicts per
image, which a small training set cannot be learnt from by heart as easily as one) and one for
the whole image, from the map pooled to 4 × 4, which judges the shape. For a conditional model
each logit gains <embed(y), its features>, the projection discriminator's class term (Miyato &
Koyama 2018). No normalisation layers: their batch statistics would mix real and decoded images,
and the R1 penalty keeps the gradients in check instead (Mescheder et al. 2018).

With local_share > 0 a third head reads the full-resolution map of the first convolution
through two more 3 × 3 convolutions: a verdict per pixel on the 7 × 7 pixels around it, where
the profile of an edge (a soft halo or an abrupt end) is all there is to see. Its verdicts
share local_share of each image's verdict; the patches and the whole image the rest.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

POOLED = 4  # side of the pooled feature map the whole-image head reads


class Discriminator(nn.Module):
    """forward: x (N, C, H, W) in [0, 1], y (N,) or None -> (logits (N, P + 1 [+ H·W]): one per
    patch of the last feature map, one for the image [and one per pixel]; features
    (N, 4·WIDTH·16), the pooled map, for the feature-matching term)."""

    def __init__(self, channels: int, width: int, num_classes: int = 0, local_share: float = 0.0) -> None:
        super().__init__()
        if not 0 <= local_share < 1:
            raise ValueError(f"local_share must be in [0, 1), got {local_share}")
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
        self.local_share = local_share
        self.local_head = (
            nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(width, 1, 3, padding=1))
            if local_share
            else None
        )

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        full = self.body[:2](x * 2 - 1)  # (N, WIDTH, H, W): the first convolution's map
        features = self.body[2:](full)  # (N, F, h, w)
        pooled = self.pool(features)  # (N, F, 4, 4)
        patches = self.patch_head(features).flatten(1)  # (N, h·w)
        image = self.image_head(pooled.flatten(1))  # (N, 1)
        if self.embed is not None:
            if y is None:
                raise ValueError("a class-conditional discriminator needs the labels y (N,)")
            embedded = self.embed(y.long())  # (N, F)
            patches = patches + torch.einsum("nf,nfhw->nhw", embedded, features).flatten(1)
            image = image + (embedded * pooled.mean(dim=(2, 3))).sum(1, keepdim=True)
        verdicts = [patches, image]
        if self.local_head is not None:
            verdicts.append(self.local_head(full).flatten(1))  # (N, H·W)
        return torch.cat(verdicts, dim=1), pooled.flatten(1)

    def logit_weights(self, side: int) -> Tensor:
        """(L,) weights summing to 1 for the logits of a SIDE × SIDE image: the patches' and the
        image's alike, 1 − local_share between them; the full-resolution head's local_share."""
        judged = (side // 8) ** 2 + 1  # three stride-2 halvings, then the whole image
        uniform = torch.full((judged,), (1 - self.local_share) / judged)
        if self.local_head is None:
            return uniform
        return torch.cat([uniform, torch.full((side * side,), self.local_share / (side * side))])


def per_image(disc: Discriminator, logits: Tensor) -> Tensor:
    """An image's verdict from its LOGITS (N, L), or from a function of them (a hinge): their mean
    (N,), each head weighted by its share (Discriminator.logit_weights)."""
    if disc.local_head is None:
        return logits.mean(dim=1)
    count = logits.shape[1]  # side² + (side // 8)² + 1 for a side × side image
    side = next(s for s in range(math.isqrt(count), 0, -1) if s * s + (s // 8) ** 2 + 1 == count)
    return logits @ disc.logit_weights(side).to(logits)


def r1_penalty(disc: Discriminator, real: Tensor, y: Tensor | None, augment: Callable[[Tensor], Tensor]) -> Tensor:
    """Mescheder et al. 2018's R1: E ‖∇_x D(x)‖² over real images X (N, C, H, W), D(x) the
    verdict on an image (per_image), AUGMENT applied as in the discriminator's own step (a
    function of the images). Its gradient flows to the discriminator (create_graph)."""
    real = real.detach().requires_grad_(True)
    logits, _ = disc(augment(real), y)
    (grad,) = torch.autograd.grad(per_image(disc, logits).sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(dim=1).mean()
