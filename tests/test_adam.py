"""training.adam.Adam: torch.optim.Adam(fused=True)'s update, bit for bit, and its state round trip."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from training.adam import Adam
from training.model import ConvVAE, ModelConfig, vae_loss


def _model() -> ConvVAE:
    torch.manual_seed(0)
    return ConvVAE(ModelConfig(conv_channels=(8, 16, 16), hidden_dim=32)).to(memory_format=torch.channels_last)


def _train(model: ConvVAE, optimizer, steps: range, set_lr) -> list[float]:
    losses = []
    for step in steps:
        generator = torch.Generator().manual_seed(step)
        x = torch.rand(16, 1, 28, 28, generator=generator).contiguous(memory_format=torch.channels_last)
        logits, mu, logvar = model(x, generator)
        loss = vae_loss(logits, x, mu, logvar).total / len(x)
        optimizer.zero_grad()
        loss.backward()
        if step == 2:  # a parameter without a gradient keeps its moments and its step count
            model.to_logvar.weight.grad = None
        set_lr(optimizer, 1e-3 * (1 + step % 3))
        optimizer.step()
        losses.append(loss.item())
    return losses


def _set_ours(optimizer: Adam, lr: float) -> None:
    optimizer.lr = lr


def _set_torch(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def test_adam_is_torch_fused_adam_bit_for_bit() -> None:
    ours_model, torch_model = _model(), _model()
    ours = Adam(ours_model.parameters(), lr=1e-3)
    reference = torch.optim.Adam(torch_model.parameters(), lr=1e-3, fused=True)
    ours_losses = _train(ours_model, ours, range(6), _set_ours)
    torch_losses = _train(torch_model, reference, range(6), _set_torch)
    assert ours_losses == torch_losses
    assert ours_losses[-1] < ours_losses[0]
    for a, b in zip(ours_model.parameters(), torch_model.parameters()):
        assert torch.equal(a, b)
    state = reference.state_dict()["state"]
    for i in range(len(list(torch_model.parameters()))):
        assert torch.equal(ours.exp_avgs[i], state[i]["exp_avg"])
        assert torch.equal(ours.exp_avg_sqs[i], state[i]["exp_avg_sq"])
        assert float(ours.steps[i]) == float(state[i]["step"])
    index = next(i for i, p in enumerate(ours_model.parameters()) if p is ours_model.to_logvar.weight)
    assert float(ours.steps[index]) == 5.0 and float(ours.steps[0]) == 6.0


def test_weight_decay_is_torch_fused_adamw_on_the_weights_alone() -> None:
    ours_model, torch_model = _model(), _model()
    ours = Adam(ours_model.parameters(), lr=1e-3, weight_decay=0.5)
    weights = [p for p in torch_model.parameters() if p.dim() >= 2]
    biases = [p for p in torch_model.parameters() if p.dim() < 2]
    assert weights and biases
    reference = torch.optim.AdamW(
        [{"params": weights, "weight_decay": 0.5}, {"params": biases, "weight_decay": 0.0}], lr=1e-3, fused=True
    )
    ours_losses = _train(ours_model, ours, range(6), _set_ours)
    assert ours_losses == _train(torch_model, reference, range(6), _set_torch)
    for a, b in zip(ours_model.parameters(), torch_model.parameters()):
        assert torch.equal(a, b)
    # and the decay did something: without it the weights end elsewhere
    plain_model = _model()
    _train(plain_model, Adam(plain_model.parameters(), lr=1e-3), range(6), _set_ours)
    assert not torch.equal(plain_model.to_mu.weight, ours_model.to_mu.weight)
    with pytest.raises(ValueError, match="weight_decay"):
        Adam(_model().parameters(), lr=1e-3, weight_decay=-1.0)


def _adam_from_file(model: ConvVAE, path) -> Adam:
    optimizer = Adam(model.parameters(), lr=1e-3)
    optimizer.load_state_tensors(load_file(path))
    return optimizer


def test_state_survives_safetensors_and_keeps_the_moments_layout(tmp_path) -> None:
    model = _model()
    optimizer = Adam(model.parameters(), lr=1e-3)
    _train(model, optimizer, range(3), _set_ours)
    save_file({k: v.contiguous() for k, v in optimizer.state_tensors().items()}, tmp_path / "state.safetensors")
    resumed = Adam(model.parameters(), lr=1e-3)
    resumed.load_state_tensors(load_file(tmp_path / "state.safetensors"))
    for i, p in enumerate(model.parameters()):
        assert torch.equal(resumed.exp_avgs[i], optimizer.exp_avgs[i])
        assert resumed.exp_avgs[i].stride() == p.stride()  # channels-last weights keep channels-last moments
        assert float(resumed.steps[i]) == float(optimizer.steps[i])
    # a resumed optimizer goes on as the original does
    copy = _model()
    copy.load_state_dict(model.state_dict())
    assert _train(model, optimizer, range(3, 5), _set_ours) == _train(
        copy, _adam_from_file(copy, tmp_path / "state.safetensors"), range(3, 5), _set_ours
    )
    for a, b in zip(model.parameters(), copy.parameters()):
        assert torch.equal(a, b)


def test_state_of_another_model_is_refused() -> None:
    optimizer = Adam(_model().parameters(), lr=1e-3)
    other = Adam(ConvVAE(ModelConfig(latent_dim=4, conv_channels=(8, 16, 16), hidden_dim=32)).parameters(), lr=1e-3)
    with pytest.raises(ValueError, match="shape"):
        optimizer.load_state_tensors(other.state_tensors())
    fewer = {k: v for k, v in optimizer.state_tensors().items() if not k.startswith("optim.0.")}
    with pytest.raises(ValueError, match="optim.0"):
        optimizer.load_state_tensors(fewer)


def test_training_never_imports_torch_dynamo(tiny_mnist, tmp_path) -> None:
    # the point of training.adam: torch.optim's first call imports torch._dynamo (0.7 s)
    code = (
        "import sys; from training.cli import main; "
        f"main(['train', '--data-dir', {str(tiny_mnist)!r}, '--out', {str(tmp_path / 'run')!r}, "
        "'--max-steps', '3', '--batch-size', '8', '--quiet']); "
        "assert 'torch._dynamo' not in sys.modules, 'torch._dynamo was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
