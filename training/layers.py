"""The decoders' building blocks.

UpConv: the VAE decoder's transposed convolution, in the form oneDNN's CPU kernels run fast. It
computes what nn.ConvTranspose2d(k=3, s=2, p=1) computes, with the same weights and names; only
the odd output side and, when training on a CPU, the weight gradient take another route
(docs/training-speed.md has the measurements). Inference, ONNX export and CUDA use the plain op.

ResidualDecoder: the larger decoder a sharpened checkpoint may have (ModelConfig.decoder =
"residual"): residual blocks, and nearest-neighbour upsampling followed by a convolution, which
draws no checkerboard as transposed convolutions can (Odena et al. 2016).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _memory_format(t: Tensor) -> torch.memory_format:
    """channels_last if T (N, C, H, W) is laid out so, else the default layout."""
    return torch.channels_last if t.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


class _TransposedConvolution(torch.autograd.Function):
    """conv_transpose2d whose backward computes the weight gradient as the regular
    convolution's: dL/dW of y = conv_transpose(x, W) is dL/dW of z = conv(g, W) with upstream
    gradient x (g = dL/dy), the same sums, for which oneDNN has a faster bf16 kernel."""

    @staticmethod
    def forward(
        ctx,
        x: Tensor,
        weight: Tensor,
        bias: Tensor,
        stride: tuple[int, int],
        padding: tuple[int, int],
        output_padding: tuple[int, int],
    ) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.geometry = (stride, padding)
        y = torch.ops.aten.convolution(x, weight, bias, stride, padding, (1, 1), True, output_padding, 1)
        # the layout oneDNN picked (channels-last even for an NCHW input when the weights are),
        # for the gradient: the kernels would otherwise each copy it, and its sum upcasts it
        ctx.layout = _memory_format(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        stride, padding = ctx.geometry
        grad = grad.contiguous(memory_format=ctx.layout)
        grad_x = None
        if ctx.needs_input_grad[0]:  # the transposed convolution's input gradient is a convolution
            grad_x = torch.ops.aten.convolution(grad, weight, None, stride, padding, (1, 1), False, (0, 0), 1)
        _, grad_weight, _ = torch.ops.aten.convolution_backward(
            x, grad, weight, None, stride, padding, (1, 1), False, (0, 0), 1, [False, True, False]
        )
        return grad_x, grad_weight, grad.sum(dim=(0, 2, 3)), None, None, None


class UpConv(nn.ConvTranspose2d):
    """A 3×3, stride-2, padding-1 transposed convolution from side n to side OUT_SIZE, which is
    2n - 1 or 2n. The odd side is computed as 2n and cropped: output_padding only appends a
    row and a column, so the values are the same, and oneDNN's CPU kernel for the odd case is
    several times slower. When training on a CPU, the backward is _TransposedConvolution's.
    Weights and their names are those of nn.ConvTranspose2d."""

    def __init__(self, in_channels: int, out_channels: int, out_size: int) -> None:
        super().__init__(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1)
        self.out_size = out_size

    def forward(self, x: Tensor) -> Tensor:  # (N, C_in, n, n) -> (N, C_out, out_size, out_size)
        if torch.is_grad_enabled() and x.device.type == "cpu":
            weight, bias = self.weight, self.bias
            # cast as autocast would, so that the Function saves what its backward computes with
            if torch.is_autocast_enabled("cpu"):
                dtype = torch.get_autocast_dtype("cpu")
                x, weight, bias = x.to(dtype), weight.to(dtype), bias.to(dtype)
            y = _TransposedConvolution.apply(x, weight, bias, self.stride, self.padding, self.output_padding)
        else:  # inference, ONNX export, CUDA
            y = super().forward(x)
        if y.shape[-1] == self.out_size:
            return y
        # A dense copy, not a view: an in-place ReLU on a view makes autograd clone and
        # scatter the whole gradient (CopySlices) in backward.
        return y[..., : self.out_size, : self.out_size].contiguous(memory_format=_memory_format(y))


class ResidualBlock(nn.Module):
    """x + conv(act(conv(act(x)))), 3 × 3 convolutions keeping the width; the second starts at
    zero, so a new block is the identity and a deep decoder trains from the start."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor) -> Tensor:  # (N, C, H, W) -> (N, C, H, W)
        return x + self.conv2(F.leaky_relu(self.conv1(F.leaky_relu(x, 0.2)), 0.2))


class Upsample(nn.Module):
    """Nearest-neighbour upsampling to a side of SIZE pixels, then a 3 × 3 convolution."""

    def __init__(self, in_channels: int, out_channels: int, size: int) -> None:
        super().__init__()
        self.size = size
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:  # (N, C_in, n, n) -> (N, C_out, size, size)
        return self.conv(F.interpolate(F.leaky_relu(x, 0.2), size=(self.size, self.size), mode="nearest"))


class ResidualDecoder(nn.Module):
    """h (N, IN_FEATURES): a latent and, for a conditional model, its one-hot class -> pixel
    logits (N, CHANNELS, SIZES[-1], SIZES[-1]).

    Two dense layers give a WIDTHS[0] × SIZES[0]² map; then, for each further side in SIZES, a
    residual block and an upsampling to that side with the next width; a last residual block
    and a 3 × 3 convolution to the image's channels."""

    def __init__(self, in_features: int, hidden: int, widths: tuple[int, ...], sizes: list[int], channels: int) -> None:
        super().__init__()
        if len(widths) != len(sizes):
            raise ValueError(f"one width per side: {len(widths)} widths for sides {sizes}")
        self.start = (widths[0], sizes[0], sizes[0])
        self.dense = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, widths[0] * sizes[0] * sizes[0]),
        )
        stages: list[nn.Module] = []
        for i in range(1, len(widths)):
            stages += [ResidualBlock(widths[i - 1]), Upsample(widths[i - 1], widths[i], sizes[i])]
        self.stages = nn.Sequential(*stages, ResidualBlock(widths[-1]))
        self.to_pixels = nn.Conv2d(widths[-1], channels, 3, padding=1)

    def forward(self, h: Tensor) -> Tensor:
        x = self.stages(self.dense(h).view(-1, *self.start))
        return self.to_pixels(F.leaky_relu(x, 0.2))
