"""The convolutional VAE and its loss.

The model of a Wolfram Summer School project (a conv VAE trained with 784·MSE + KL, Adam 5e-4,
batch 32, z = 8, on MNIST and on 1,072 Monet paintings, after Doersch 2016's tutorial); "the
original project" elsewhere means that one.

Encoder: three stride-2 convolutions, flatten, a dense hidden layer, then two dense heads for
the mean and the log-variance of q(z|x). Decoder: the mirror image, dense layers then three
transposed convolutions giving logits; decode() applies the sigmoid so that images come out
in [0, 1], while the loss works on the logits (stable, and NaN propagates instead of raising).
A sharpened checkpoint may replace the mirror with a larger residual decoder (decoder =
"residual", training/layers.py's ResidualDecoder) on the same encoder.

    model = ConvVAE(ModelConfig())
    mu, logvar = model.encode(x)          # x: (N, C, H, W) in [0, 1] -> (N, D), (N, D)
    z = model.reparameterize(mu, logvar)  # (N, D)
    x_hat = model.decode(z)               # (N, C, H, W) in [0, 1]
    logits = model.decode_logits(z)       # (N, C, H, W), x_hat = sigmoid(logits)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.layers import ResidualDecoder, UpConv

LOSSES = ("bce", "mse")
DECODERS = ("mirror", "residual")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network; saved as JSON beside the weights."""

    latent_dim: int = 8
    channels: int = 1  # 1 for gray, 3 for RGB
    image_size: int = 28  # square images, side in pixels
    conv_channels: tuple[int, ...] = (32, 64, 64)
    hidden_dim: int = 256
    num_classes: int = 0  # > 0: a conditional VAE, encoder and decoder also see the label
    # "mirror": the encoder's mirror image; "residual": ResidualDecoder with DECODER_CHANNELS,
    # the widths from its smallest side to the image's (each side double the one before)
    decoder: str = "mirror"
    decoder_channels: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        # JSON gives lists; keep the dataclass hashable and comparable.
        object.__setattr__(self, "conv_channels", tuple(int(c) for c in self.conv_channels))
        object.__setattr__(self, "decoder_channels", tuple(int(c) for c in self.decoder_channels))
        if not 1 <= self.latent_dim <= 1024:
            raise ValueError(f"latent_dim must be in 1..1024, got {self.latent_dim}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (gray) or 3 (RGB), got {self.channels}")
        if not self.conv_channels or any(c < 1 for c in self.conv_channels):
            raise ValueError(f"conv_channels must be positive widths, got {self.conv_channels}")
        if self.image_size < 2 ** len(self.conv_channels):
            raise ValueError(
                f"image_size {self.image_size} is too small for {len(self.conv_channels)} stride-2 convolutions"
            )
        if self.hidden_dim < 1:
            raise ValueError(f"hidden_dim must be positive, got {self.hidden_dim}")
        if not 0 <= self.num_classes <= 10_000:
            raise ValueError(f"num_classes must be 0 (unconditional) or a class count, got {self.num_classes}")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        if (self.decoder == "residual") != bool(self.decoder_channels):
            raise ValueError("decoder_channels are the residual decoder's widths: give them for it alone")
        if any(c < 1 for c in self.decoder_channels):
            raise ValueError(f"decoder_channels must be positive widths, got {self.decoder_channels}")
        if self.image_size < 2 ** (len(self.decoder_channels) - 1):
            raise ValueError(f"image_size {self.image_size} is too small for {len(self.decoder_channels)} sides")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    @property
    def pixels(self) -> int:
        """Values per image, C·H·W (784 for MNIST)."""
        return self.channels * self.image_size * self.image_size

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config fields: {sorted(unknown)}")
        return cls(**data)


def conv_sizes(image_size: int, layers: int) -> list[int]:
    """Spatial side after each k=3, s=2, p=1 convolution, input side first: 28 -> 14 -> 7 -> 4."""
    sizes = [image_size]
    for _ in range(layers):
        sizes.append((sizes[-1] + 2 - 3) // 2 + 1)
    return sizes


class ConvVAE(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        widths = (config.channels, *config.conv_channels)
        sizes = conv_sizes(config.image_size, len(config.conv_channels))
        self._bottleneck = (widths[-1], sizes[-1], sizes[-1])
        flat = widths[-1] * sizes[-1] * sizes[-1]

        # In-place ReLUs: autograd keeps their outputs, which is all their backward needs.
        encoder: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            encoder += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
        encoder += [nn.Flatten(), nn.Linear(flat, config.hidden_dim), nn.ReLU(inplace=True)]
        self.encoder = nn.Sequential(*encoder)
        # A conditional VAE's label (one-hot) joins the encoder's dense heads and the decoder's input.
        labels = config.num_classes
        self.to_mu = nn.Linear(config.hidden_dim + labels, config.latent_dim)
        self.to_logvar = nn.Linear(config.hidden_dim + labels, config.latent_dim)

        if config.decoder == "residual":
            sides = conv_sizes(config.image_size, len(config.decoder_channels) - 1)[::-1]
            self.decoder = ResidualDecoder(
                config.latent_dim + labels, config.hidden_dim, config.decoder_channels, sides, config.channels
            )
            return
        decoder: list[nn.Module] = [
            nn.Linear(config.latent_dim + labels, config.hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(config.hidden_dim, flat),
            nn.ReLU(inplace=True),
            nn.Unflatten(1, self._bottleneck),
        ]
        rev_widths, rev_sizes = widths[::-1], sizes[::-1]
        for i, (c_in, c_out) in enumerate(zip(rev_widths[:-1], rev_widths[1:])):
            # each transposed conv lands exactly on the encoder's size at that depth
            decoder.append(UpConv(c_in, c_out, out_size=rev_sizes[i + 1]))
            if i < len(rev_widths) - 2:
                decoder.append(nn.ReLU(inplace=True))
        self.decoder = nn.Sequential(*decoder)

    @property
    def last_decoder_layer(self) -> nn.Module:
        """The convolution that gives the pixel logits."""
        return self.decoder.to_pixels if self.config.decoder == "residual" else self.decoder[-1]

    def _with_label(self, h: Tensor, y: Tensor | None) -> Tensor:
        """h (N, F) with the one-hot label appended for a conditional model; an unconditional
        model ignores y, so callers may always pass the labels they have."""
        if not self.config.num_classes:
            return h
        if y is None:
            raise ValueError("this is a conditional VAE: pass the labels y (N,) to encode and decode")
        return torch.cat([h, F.one_hot(y.long(), self.config.num_classes).to(h.dtype)], dim=1)

    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x: (N, C, H, W) in [0, 1] (and labels y (N,) for a conditional model) -> mean and
        log-variance of q(z|x, y), each (N, D)."""
        h = self._with_label(self.encoder(x), y)
        return self.to_mu(h), self.to_logvar(h)

    @staticmethod
    def reparameterize(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """z = mu + sigma * eps with eps ~ N(0, I), so gradients flow through mu and sigma."""
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + eps * torch.exp(0.5 * logvar)

    def decode_logits(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """z: (N, D) (and labels y (N,) for a conditional model) -> pixel logits (N, C, H, W)."""
        return self.decoder(self._with_label(z, y))

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """z: (N, D) (and labels y (N,) for a conditional model) -> images (N, C, H, W) in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z, y))

    def forward(
        self, x: Tensor, generator: torch.Generator | None = None, y: Tensor | None = None, eps: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """x (and y) -> (logits of the reconstruction, mu, logvar), for vae_loss. EPS (N, D), if
        given, is the reparameterization noise (data-parallel training draws it for the whole
        global batch, so that N processes add the same noise one process would)."""
        mu, logvar = self.encode(x, y)
        if eps is None:
            z = self.reparameterize(mu, logvar, generator)
        else:
            z = mu + eps.to(mu.dtype) * torch.exp(0.5 * logvar)
        return self.decode_logits(z, y), mu, logvar


@dataclass(frozen=True)
class LossParts:
    """Per-batch sums, in nats for 'bce'; divide by the batch size for per-image values."""

    total: Tensor
    reconstruction: Tensor
    kl: Tensor


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(q(z|x) || N(0, I)) per image, (N,): -1/2 · sum_j (1 + log σ_j² - μ_j² - σ_j²)."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def reconstruction_error(logits: Tensor, x: Tensor, loss: str) -> Tensor:
    """Per image, (N,), from the decoder's logits. 'bce': -log p(x|z) under a Bernoulli
    decoder (nats). 'mse': sum of squared errors of sigmoid(logits), the original
    project's 784·MSE."""
    if loss == "bce":
        per_pixel = F.binary_cross_entropy_with_logits(logits.float(), x.float(), reduction="none")
    elif loss == "mse":
        per_pixel = (torch.sigmoid(logits.float()) - x.float()).pow(2)
    else:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    return per_pixel.flatten(1).sum(dim=1)


def vae_loss(logits: Tensor, x: Tensor, mu: Tensor, logvar: Tensor, loss: str = "bce", beta: float = 1.0) -> LossParts:
    """Negative ELBO summed over the batch: recon(x | logits) + beta · KL(q(z|x) || p(z)).

    With loss='mse' and beta=1 this is the original project's objective, 784·MSE + KL (Kingma &
    Welling 2014, eq. 10, with a Gaussian decoder of fixed variance 1/2 up to a constant).
    """
    reconstruction = reconstruction_error(logits, x, loss).sum()
    kl = kl_divergence(mu.float(), logvar.float()).sum()
    return LossParts(total=reconstruction + beta * kl, reconstruction=reconstruction, kl=kl)


def log_likelihood(logits: Tensor, x: Tensor, loss: str) -> Tensor:
    """log p(x|z) per image in nats, (N,). For 'mse' the decoder is N(sigmoid(logits), 1/2 · I),
    the Gaussian whose negative log-density is the squared error plus a constant."""
    if loss == "bce":
        return -reconstruction_error(logits, x, "bce")
    pixels = x[0].numel()
    return -reconstruction_error(logits, x, "mse") - 0.5 * pixels * math.log(math.pi)
