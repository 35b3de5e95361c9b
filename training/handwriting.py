"""Handwriting's variety, drawn on the training images as they are used: small rotations,
scale, shear and shifts, thicker and thinner strokes, and elastic distortion (Simard et al.
2003). A digit model trained on MNIST alone learns MNIST's handwriting; one trained on these
distortions of it reads digits it never saw (bench/handwriting.py measures how well). The
encoder sees the distorted image and the decoder reconstructs it: the VAE's loss is unchanged.

    distortion = Distortion(rotation=12, scale=0.1, shear=0.2, shift=2, thickness=0.6, elastic=1.5)
    params = epoch_distortions(distortion, seed, epoch, n)      # (N, PARAMETERS), on the CPU
    x = distort(images, params[rows].to(images.device), distortion)   # (B, C, H, W) -> same

Every image gets its own draw once per epoch, a pure function of the seed and the epoch (as
the epoch's order is), so a resumed run distorts what it would have, on any device, and a
CUDA graph reads the draws from a buffer filled once per epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

ELASTIC_GRID = 4  # elastic displacements are drawn on a 4 × 4 grid and smoothly interpolated
# per image: rotation, scale, shear, x and y shift, thickness (each uniform in [-1, 1]), then
# the elastic grid's x and y displacements
PARAMETERS = 6 + 2 * ELASTIC_GRID * ELASTIC_GRID


@dataclass(frozen=True)
class Distortion:
    """The largest distortion of each kind (0: none of that kind); each image's is uniform
    within ± the value."""

    rotation: float = 0.0  # degrees
    scale: float = 0.0  # relative: a side times 1 ± scale
    shear: float = 0.0  # horizontal shift per unit of height (a slant)
    shift: float = 0.0  # pixels, each way
    # strokes grown by up to this share of a 3 × 3 dilation, or thinned by up to half of it of an
    # erosion (which also fades them, so less of it)
    thickness: float = 0.0
    elastic: float = 0.0  # pixels: the largest displacement of the elastic field's grid points

    def __post_init__(self) -> None:
        for name in ("rotation", "scale", "shear", "shift", "thickness", "elastic"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"the {name} distortion must be 0 or a positive number, got {value}")
        if self.scale >= 1:
            raise ValueError(f"the scale distortion must be below 1 (a side times 1 ± scale), got {self.scale}")
        if self.thickness > 1:
            raise ValueError(f"the thickness distortion is at most 1 (a whole dilation), got {self.thickness}")

    @property
    def active(self) -> bool:
        return any((self.rotation, self.scale, self.shear, self.shift, self.thickness, self.elastic))


def epoch_distortions(distortion: Distortion, seed: int, epoch: int, n: int) -> Tensor:
    """(N, PARAMETERS) float32 uniform draws in [-1, 1] for EPOCH's N images, on the CPU: a pure
    function of the seed and the epoch (another stream than the order's and the noise's)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 900_001)
    return torch.rand(n, PARAMETERS, generator=generator) * 2 - 1


def affine_grid(params: Tensor, distortion: Distortion, size: tuple[int, int]) -> Tensor:
    """The sampling grid (B, H, W, 2) of each image's affine distortion, in grid_sample's
    coordinates ([-1, 1] across the image): the content is scaled, sheared, rotated about the
    centre and shifted, so each output pixel samples the input at the inverse of that map."""
    h, w = size
    angle = params[:, 0] * math.radians(distortion.rotation)
    scale = 1 + params[:, 1] * distortion.scale
    shear = params[:, 2] * distortion.shear
    shift_x, shift_y = params[:, 3] * distortion.shift * 2 / w, params[:, 4] * distortion.shift * 2 / h
    cos, sin = torch.cos(angle), torch.sin(angle)
    # the content's map, A = rotation · shear · scale, x ↦ A x + t (y grows downwards)
    a11, a12 = scale * cos, scale * (cos * shear - sin)
    a21, a22 = scale * sin, scale * (sin * shear + cos)
    det = a11 * a22 - a12 * a21
    inverse = torch.stack(  # (B, 2, 3): x ↦ A⁻¹ (x − t)
        [
            torch.stack([a22, -a12, -(a22 * shift_x - a12 * shift_y)], dim=1),
            torch.stack([-a21, a11, -(-a21 * shift_x + a11 * shift_y)], dim=1),
        ],
        dim=1,
    ) / det.view(-1, 1, 1)
    return F.affine_grid(inverse, [len(params), 1, h, w], align_corners=False)


def elastic_field(params: Tensor, distortion: Distortion, size: tuple[int, int]) -> Tensor:
    """Each image's elastic displacement (B, H, W, 2) in grid coordinates: random offsets at
    the points of an ELASTIC_GRID grid, interpolated bicubically into a smooth field."""
    h, w = size
    coarse = params[:, 6:].view(-1, 2, ELASTIC_GRID, ELASTIC_GRID) * distortion.elastic  # pixels
    field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)  # (B, 2, H, W)
    scale = torch.tensor([2 / w, 2 / h], device=params.device, dtype=params.dtype).view(1, 2, 1, 1)
    return (field * scale).permute(0, 2, 3, 1)


def change_thickness(x: Tensor, amount: Tensor) -> Tensor:
    """X (B, C, H, W) with its strokes grown (AMOUNT (B,) > 0) or thinned (< 0) by that share
    of a 3 × 3 grey-level dilation (erosion): 1 grows a stroke by a pixel on each side."""
    dilated = F.max_pool2d(x, 3, stride=1, padding=1)
    eroded = -F.max_pool2d(-x, 3, stride=1, padding=1)
    amount = amount.view(-1, 1, 1, 1)
    return torch.where(amount >= 0, x + amount * (dilated - x), x + amount.neg() * (eroded - x))


def distort(x: Tensor, params: Tensor, distortion: Distortion) -> Tensor:
    """Images X (B, C, H, W) in [0, 1], each distorted by its row of PARAMS (B, PARAMETERS)
    (epoch_distortions' draws, on X's device): one resampling (bilinear, the border repeated
    outwards) for the affine and elastic parts, then the strokes' thickness."""
    size = (x.shape[2], x.shape[3])
    params = params.to(x.dtype)
    grid = affine_grid(params, distortion, size)
    if distortion.elastic:
        grid = grid + elastic_field(params, distortion, size)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if distortion.thickness:
        draw = params[:, 5]
        out = change_thickness(out, torch.where(draw >= 0, draw, draw / 2) * distortion.thickness)
    return out.clamp(0, 1)
