import math

import pytest
import torch

from tests.conftest import synthetic_digits
from training.layers import UpConv
from training.model import ConvVAE, ModelConfig, kl_divergence, log_likelihood, vae_loss


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 64, 64)])
def test_encode_decode_shapes_and_ranges(shape: tuple[int, int, int]) -> None:
    config = ModelConfig(latent_dim=8, channels=shape[0], image_size=shape[1])
    model = ConvVAE(config).eval()
    x = torch.rand(5, *shape)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        x_hat = model.decode(torch.randn(5, 8) * 3)
    assert mu.shape == (5, 8) and logvar.shape == (5, 8)
    assert x_hat.shape == (5, *shape)
    assert float(x_hat.min()) >= 0.0 and float(x_hat.max()) <= 1.0


def test_the_original_decoder_size() -> None:
    # The Wolfram Summer School project's decoder: dense 8->256->1024, then three transposed convolutions.
    model = ConvVAE(ModelConfig())
    assert sum(p.numel() for p in model.decoder.parameters()) == 321_153


@pytest.mark.parametrize("side,out_size", [(4, 7), (7, 14), (8, 15), (8, 16)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_upconv_is_the_transposed_convolution_with_the_natural_output_size(
    side: int, out_size: int, channels_last: bool
) -> None:
    # UpConv computes an odd side as the even one and crops it (a faster kernel on CPUs):
    # values and gradients must be those of the plain transposed convolution of that size.
    torch.manual_seed(0)
    up = UpConv(6, 5, out_size)
    plain = torch.nn.ConvTranspose2d(6, 5, 3, stride=2, padding=1, output_padding=out_size - (2 * side - 1))
    plain.load_state_dict(up.state_dict())
    if channels_last:
        up, plain = up.to(memory_format=torch.channels_last), plain.to(memory_format=torch.channels_last)
    x = torch.randn(3, 6, side, side, requires_grad=True)
    y_up, y_plain = up(x), plain(x)
    assert y_up.shape == y_plain.shape == (3, 5, out_size, out_size)
    assert torch.allclose(y_up, y_plain, atol=1e-6)
    with torch.no_grad():  # inference takes the other path (the plain operator)
        assert torch.allclose(up(x), y_plain, atol=1e-6)
    # the gradients, which UpConv computes its own way when training on a CPU
    weights = torch.randn_like(y_plain)
    grads_up = torch.autograd.grad((y_up * weights).sum(), (x, up.weight, up.bias))
    grads_plain = torch.autograd.grad((y_plain * weights).sum(), (x, plain.weight, plain.bias))
    for name, a, b in zip(("input", "weight", "bias"), grads_up, grads_plain):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5), name


def test_upconv_gradients_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    up = UpConv(64, 32, 14).to(memory_format=torch.channels_last)
    plain = torch.nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1).to(
        memory_format=torch.channels_last
    )
    plain.load_state_dict(up.state_dict())
    x = torch.randn(16, 64, 7, 7).contiguous(memory_format=torch.channels_last).requires_grad_()
    weights = torch.randn(16, 32, 14, 14)
    grads = []
    for layer in (up, plain):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = layer(x)
        assert y.dtype == torch.bfloat16
        grads.append(torch.autograd.grad((y.float() * weights).sum(), (x, layer.weight, layer.bias)))
    for name, a, b in zip(("input", "weight", "bias"), *grads):
        assert a.dtype == b.dtype == torch.float32, name  # the fp32 parameters get fp32 gradients
        # both in bf16: agree to bf16 rounding of sums over 16·7·7 or 16·14·14 terms
        assert torch.allclose(a, b, rtol=2e-2, atol=2e-2 * float(b.abs().max())), name


@pytest.mark.parametrize("channels_last", [False, True])
def test_training_graph_has_no_copy_slices(channels_last: bool) -> None:
    # An in-place ReLU on a cropped view makes autograd clone and scatter the whole gradient
    # (CopySlices) in backward, a large part of a CPU training step; UpConv returns copies.
    model = ConvVAE(ModelConfig())
    x = torch.rand(4, 1, 28, 28)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    logits, mu, logvar = model(x)
    seen, todo = set(), [logits.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        todo += [next_node for next_node, _ in node.next_functions]
    names = {type(node).__name__ for node in seen}
    assert "ReluBackward0" in names and "ConvolutionBackward0" in names  # the walk reached the layers
    assert "CopySlices" not in names


def test_kl_is_zero_at_the_prior() -> None:
    mu, logvar = torch.zeros(4, 8), torch.zeros(4, 8)
    assert torch.equal(kl_divergence(mu, logvar), torch.zeros(4))
    # and positive anywhere else: KL(N(1, 1) || N(0, 1)) = 1/2 per dimension
    assert torch.allclose(kl_divergence(torch.ones(1, 8), torch.zeros(1, 8)), torch.tensor([4.0]))


@pytest.mark.parametrize("loss", ["bce", "mse"])
def test_loss_parts_add_up(loss: str) -> None:
    torch.manual_seed(0)
    x, logits = torch.rand(6, 1, 28, 28), torch.randn(6, 1, 28, 28)
    x_hat = torch.sigmoid(logits)
    mu, logvar = torch.randn(6, 8), torch.randn(6, 8)
    parts = vae_loss(logits, x, mu, logvar, loss=loss, beta=0.5)
    assert torch.allclose(parts.total, parts.reconstruction + 0.5 * parts.kl)
    assert float(parts.kl) > 0
    if loss == "mse":  # the original project's 784·MSE is a sum of squared errors
        assert torch.allclose(parts.reconstruction, 784 * 6 * torch.mean((x_hat - x) ** 2))
    else:  # Bernoulli: -sum [x log x_hat + (1 - x) log(1 - x_hat)]
        expected = -(x * torch.log(x_hat) + (1 - x) * torch.log(1 - x_hat)).sum()
        assert torch.allclose(parts.reconstruction, expected, rtol=1e-4)


def test_nan_propagates_instead_of_raising() -> None:
    logits = torch.full((2, 1, 28, 28), float("nan"))
    parts = vae_loss(logits, torch.rand(2, 1, 28, 28), torch.zeros(2, 8), torch.zeros(2, 8))
    assert torch.isnan(parts.total)


def test_gaussian_likelihood_constant() -> None:
    x = torch.full((1, 1, 28, 28), 0.5)
    # perfect reconstruction (logit 0 = 0.5) under N(x_hat, 1/2): log density = -784/2 · log(pi)
    assert torch.allclose(log_likelihood(torch.zeros_like(x), x, "mse"), torch.tensor([-392 * math.log(math.pi)]))


def test_a_few_steps_lower_the_loss() -> None:
    torch.manual_seed(0)
    model = ConvVAE(ModelConfig(conv_channels=(8, 16, 16), hidden_dim=32))
    images, _ = synthetic_digits(32, seed=0)
    x = torch.from_numpy(images).unsqueeze(1).float() / 255
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(30):
        logits, mu, logvar = model(x, generator)
        loss = vae_loss(logits, x, mu, logvar).total / len(x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize(
    "bad", [dict(latent_dim=0), dict(channels=2), dict(image_size=4), dict(conv_channels=()), dict(hidden_dim=0)]
)
def test_invalid_model_config(bad: dict) -> None:
    with pytest.raises(ValueError):
        ModelConfig(**bad)


def test_a_conditional_vae_sees_the_label() -> None:
    import pytest

    torch.manual_seed(0)
    config = ModelConfig(conv_channels=(4, 8, 8), hidden_dim=16, num_classes=10)
    model = ConvVAE(config).eval()
    x, y = torch.rand(3, 1, 28, 28), torch.tensor([1, 2, 3])
    mu, logvar = model.encode(x, y)
    assert mu.shape == logvar.shape == (3, 8)
    z = torch.zeros(2, 8)
    a, b = model.decode(z, torch.tensor([0, 0])), model.decode(z, torch.tensor([0, 7]))
    assert a.shape == (2, 1, 28, 28) and torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1])
    logits, mu, logvar = model(x, None, y)
    assert logits.shape == x.shape
    with pytest.raises(ValueError, match="conditional"):
        model.decode(z)
    plain = ConvVAE(ModelConfig(conv_channels=(4, 8, 8), hidden_dim=16)).eval()
    assert torch.equal(plain.decode(z), plain.decode(z, torch.tensor([3, 4])))  # labels ignored


def test_the_benchmarks_stock_layer_baseline_is_the_same_model() -> None:
    # bench/train_speed.py times the tutorial loop once more on PyTorch's own layers; a
    # comparison is only fair if that is the same function with the same weights.
    from bench.train_speed import with_stock_layers

    torch.manual_seed(0)
    ours = ConvVAE(ModelConfig())
    stock = with_stock_layers(ConvVAE(ModelConfig()))
    stock.load_state_dict(ours.state_dict())
    layers = [type(layer).__name__ for layer in stock.decoder]
    assert layers.count("ConvTranspose2d") == 3 and "UpConv" not in layers
    x, eps = torch.rand(4, 1, 28, 28), torch.randn(4, 8)
    for model in (ours, stock):
        logits, mu, logvar = model(x, eps=eps)
        vae_loss(logits, x, mu, logvar).total.backward()
    assert torch.allclose(ours(x, eps=eps)[0], stock(x, eps=eps)[0], atol=1e-5)
    for (name, a), b in zip(ours.named_parameters(), stock.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-5), name
