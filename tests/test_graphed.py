"""The CUDA-graph training step's bookkeeping (training/graphed.py), run eagerly on the CPU:
which batch, which noise, which learning rate, where the loss goes, and the training loop
around it (resume, NaN, signals). tests/test_cuda.py runs the captured graph on a GPU."""

import copy
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import TINY_MODEL
from training import train as train_module
from training.adam import Adam
from training.graphed import GraphedSteps, epoch_noise_seed
from training.model import ConvVAE, LossParts, vae_loss
from training.train import TrainConfig, TrainingError, train


@pytest.mark.parametrize("classes", [0, 4], ids=["unconditional", "conditional"])
def test_graphed_steps_take_the_plain_loops_batches_noise_and_rates(classes: int) -> None:
    torch.manual_seed(0)
    graphed_model = ConvVAE(replace(TINY_MODEL, num_classes=classes)).to(memory_format=torch.channels_last)
    plain_model = copy.deepcopy(graphed_model)
    images, labels = torch.rand(100, 1, 28, 28), torch.randint(0, 4, (100,))
    batch, steps_per_epoch, seed = 16, 6, 3  # 96 of the 100 images per epoch
    schedule = torch.linspace(1e-3, 3e-3, 3 * steps_per_epoch)  # a different rate at every step
    graphed_adam = Adam(graphed_model.parameters(), lr=0.0, weight_decay=0.1)
    plain_adam = Adam(plain_model.parameters(), lr=0.0, weight_decay=0.1)
    steps = GraphedSteps(
        graphed_model, graphed_adam, images, labels, batch, schedule, steps_per_epoch, "bce", 1.0, False, vae_loss
    )
    assert not steps.capture  # on a CPU the step runs eagerly
    # two whole epochs, then the third from its third step, as a resumed run starts
    for epoch, first in ((0, 0), (1, 0), (2, 2)):
        permutation = torch.randperm(100)
        steps.start_epoch(permutation, seed, epoch, epoch * steps_per_epoch + first)
        noise = torch.randn(
            steps_per_epoch * batch, 8, generator=torch.Generator().manual_seed(epoch_noise_seed(seed, epoch))
        )
        for b in range(first, steps_per_epoch):
            steps.step()
            rows, eps = permutation[b * batch : (b + 1) * batch], noise[b * batch : (b + 1) * batch]
            x = images[rows].contiguous(memory_format=torch.channels_last)
            logits, mu, logvar = plain_model(x, None, labels[rows], eps)
            parts = vae_loss(logits, x, mu, logvar, "bce", 1.0)
            plain_adam.zero_grad()
            parts.total.div(batch).backward()
            plain_adam.lr = float(schedule[epoch * steps_per_epoch + b])
            plain_adam.step()
            assert steps.losses[b] == parts.total.detach()
        assert int(steps.step_number) == (epoch + 1) * steps_per_epoch
    for (name, a), b in zip(graphed_model.named_parameters(), plain_model.parameters()):
        assert torch.equal(a, b), name
    assert all(int(s) == 16 for s in graphed_adam.steps)  # 6 + 6 + 4 updates


def test_an_epochs_noise_depends_on_the_seed_and_the_epoch_only() -> None:
    seeds = {epoch_noise_seed(s, e) for s in range(3) for e in range(100)}
    assert len(seeds) == 300
    # and not on the permutation's seeds
    assert not seeds & {s * 1_000_003 + e for s in range(3) for e in range(100)}


@pytest.fixture
def graphed_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The training loop with GraphedSteps on the CPU (run eagerly), as on a GPU. The tests that
    use it pin device="cpu": on a GPU the step would be captured, and a patched loss function
    called only while capturing."""
    monkeypatch.setattr(train_module, "use_graphed_steps", lambda config, device, processes: config.cuda_graphs)


def test_a_graphed_run_resumed_mid_epoch_ends_where_one_run_does(
    graphed_on_cpu: None, tiny_mnist: Path, tmp_path: Path
) -> None:
    # constant rate: max_steps also sets a decaying schedule's length (as in test_train.py)
    config = TrainConfig(
        epochs=3,
        batch_size=32,
        seed=4,
        lr_schedule="constant",
        weight_decay=0.1,
        precision="fp32",
        log_every=3,
        device="cpu",
    )
    straight = train(TINY_MODEL, config, tmp_path / "straight", data_dir=tiny_mnist, progress=False)
    assert straight["cuda_graphs"] and len(straight["epoch_seconds"]) == 3
    train(TINY_MODEL, replace(config, max_steps=11), tmp_path / "split", data_dir=tiny_mnist, progress=False)
    assert json.loads((tmp_path / "split" / "state.json").read_text())["step"] == 11
    resumed = train(TINY_MODEL, config, tmp_path / "split", data_dir=tiny_mnist, resume=True, progress=False)
    assert resumed["step"] == straight["step"] == 24
    wa, wb = (
        load_file(str(tmp_path / "straight" / "model.safetensors")),
        load_file(str(tmp_path / "split" / "model.safetensors")),
    )
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name
    # and the graphed loop trains: a plain run of the same config lands near it, not on it (other noise)
    plain = train(
        TINY_MODEL, replace(config, cuda_graphs=False), tmp_path / "plain", data_dir=tiny_mnist, progress=False
    )
    assert not plain["cuda_graphs"]
    assert abs(plain["neg_elbo_nats"] - straight["neg_elbo_nats"]) < 0.1 * plain["neg_elbo_nats"]
    assert plain["neg_elbo_nats"] != straight["neg_elbo_nats"]


def test_a_graphed_run_stops_at_a_non_finite_loss(
    graphed_on_cpu: None, tiny_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}

    def poisoned(*args: object, **kwargs: object) -> LossParts:
        parts = vae_loss(*args, **kwargs)
        calls["n"] += 1
        return LossParts(parts.total * float("nan"), parts.reconstruction, parts.kl) if calls["n"] == 7 else parts

    monkeypatch.setattr(train_module, "vae_loss", poisoned)
    with pytest.raises(TrainingError, match=r"The loss became nan at step 7;"):
        train(
            TINY_MODEL,
            TrainConfig(epochs=2, batch_size=32, log_every=5, device="cpu"),
            tmp_path / "r",
            data_dir=tiny_mnist,
            progress=False,
        )
