"""The discriminator that sharpens a decoder (training/sharpen.py): patch discriminators at two
scales, and for a conditional model a projection of the class (Miyato & Koyama 2018).

    disc = Discriminator(channels=1, width=32, num_classes=0)
    logits, features = disc(x, y)   # x (N, C, H, W) in [0, 1] -> (N, P) patch logits, (N, F)

Each scale judges overlapping patches (PatchGAN, Isola et al. 2017, as taming-transformers'
NLayerDiscriminator), the second on the image average-pooled to half its side, so that one
judges texture and edges and the other the shape. A patch discriminator has many small
verdicts per image, which keeps it from memorising a small training set as a whole-image one
does. No normalisation layers: their batch statistics would mix real and decoded images, and
the R1 penalty keeps the gradients in check instead (Mescheder et al. 2018).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PatchDiscriminator(nn.Module):
    """Two stride-2 4 × 4 convolutions and a 3 × 3 one, LeakyReLU, a 3 × 3 convolution to one
    logit per patch: x (N, C, H, W) -> (logits (N, H/4, W/4), features (N, 4·WIDTH, H/4, W/4))."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1),
            nn.LeakyReLU(0.2),
        )
        self.head = nn.Conv2d(4 * width, 1, 3, padding=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.body(x)
        return self.head(features).squeeze(1), features


class Discriminator(nn.Module):
    """Patch discriminators on the image and on its half-size copy; with NUM_CLASSES > 0 each
    patch's logit gains <embed(y), its features>, the projection discriminator's class term.

    forward: x (N, C, H, W) in [0, 1], y (N,) or None -> (patch logits (N, P) of both scales,
    the full scale's features (N, F) for the feature-matching term)."""

    def __init__(self, channels: int, width: int, num_classes: int = 0) -> None:
        super().__init__()
        self.scales = nn.ModuleList([PatchDiscriminator(channels, width), PatchDiscriminator(channels, width)])
        self.num_classes = num_classes
        self.embed = nn.ModuleList([nn.Embedding(num_classes, 4 * width) for _ in self.scales]) if num_classes else None

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = x * 2 - 1
        logits, features = [], None
        for i, scale in enumerate(self.scales):
            patch_logits, patch_features = scale(x if i == 0 else F.avg_pool2d(x, 2, ceil_mode=True))
            if self.embed is not None:
                if y is None:
                    raise ValueError("a class-conditional discriminator needs the labels y (N,)")
                patch_logits = patch_logits + torch.einsum("nf,nfhw->nhw", self.embed[i](y.long()), patch_features)
            logits.append(patch_logits.flatten(1))
            if i == 0:
                features = patch_features.flatten(1)
        return torch.cat(logits, dim=1), features


def r1_penalty(disc: Discriminator, real: Tensor, y: Tensor | None, augment) -> Tensor:
    """Mescheder et al. 2018's R1: E ‖∇_x D(x)‖² over real images X (N, C, H, W), D(x) the
    mean of an image's patch logits, AUGMENT applied as in the discriminator's own step (a
    function of the images). Its gradient flows to the discriminator (create_graph)."""
    real = real.detach().requires_grad_(True)
    logits, _ = disc(augment(real), y)
    (grad,) = torch.autograd.grad(logits.mean(dim=1).sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(dim=1).mean()
