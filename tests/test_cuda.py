"""The CUDA path, on a machine with a GPU (skipped elsewhere, so in CI): the captured training
step against the same step run eagerly, the commands end to end on the GPU, and the NCCL
data-parallel path in a group of one process."""

import copy
import json
import math
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import training
from tests.conftest import ROOT, TINY_FLAGS, make_folder
from training import distributed
from training.adam import Adam
from training.graphed import GraphedSteps
from training.model import ConvVAE, ModelConfig, vae_loss
from training.train import TrainConfig, check_fits_on_gpu, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def _paired_steps(config: ModelConfig, bf16: bool, images: torch.Tensor) -> tuple[GraphedSteps, GraphedSteps]:
    torch.manual_seed(0)
    device = images.device
    model = ConvVAE(config).to(device, memory_format=torch.channels_last)
    twin = copy.deepcopy(model)
    labels = torch.randint(0, 10, (len(images),), device=device)
    schedule = torch.linspace(1e-3, 3e-3, 30, device=device)
    made = []
    for m, capture in ((model, True), (twin, False)):
        made.append(
            GraphedSteps(
                m,
                Adam(m.parameters(), lr=0.0, weight_decay=0.1),
                images,
                labels,
                64,
                schedule,
                10,
                "bce",
                1.0,
                bf16,
                vae_loss,
                capture=capture,
            )
        )
    return made[0], made[1]


@pytest.mark.parametrize("bf16", [False, True])
def test_the_captured_step_replays_the_eager_step(bf16: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # cuDNN's default fp32 weight gradients sum in a varying order; Adam turns those last-bit
    # differences into whole steps for weights whose gradient is near 0 (measured on an H200:
    # 94 of conv1's 288 weights apart by up to 2e-3 after 17 steps, the losses within 1e-4)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    images = torch.rand(700, 1, 28, 28, device="cuda")
    graphed, eager = _paired_steps(ModelConfig(), bf16, images)
    assert graphed.capture and not eager.capture
    # two epochs, the second from its fourth step (a resumed run); the capture happens at the first step
    for epoch, first in ((0, 0), (1, 3)):
        permutation = torch.randperm(700)
        for steps in (graphed, eager):
            steps.start_epoch(permutation, 7, epoch, epoch * 10 + first)
        for b in range(first, 10):
            graphed.step()
            eager.step()
            # the same kernels; only reductions whose order varies could tell them apart
            torch.testing.assert_close(graphed.losses[b], eager.losses[b], rtol=2e-3 if bf16 else 1e-4, atol=0)
    assert graphed.graph is not None
    # the whole model's weights within 1e-3 (relative norm); one step's learning rate off by one
    # puts them 4e-2 apart (measured on the CPU), the losses only 2e-4
    graphed_weights = torch.cat([p.detach().flatten() for p in graphed.model.parameters()])
    eager_weights = torch.cat([p.detach().flatten() for p in eager.model.parameters()])
    assert float((graphed_weights - eager_weights).norm() / eager_weights.norm()) < 1e-3
    assert int(graphed.step_number) == int(eager.step_number) == 20


def test_a_nan_image_shows_in_the_replayed_loss_log() -> None:
    images = torch.rand(640, 1, 28, 28, device="cuda")
    images[5] = float("nan")
    graphed, _ = _paired_steps(ModelConfig(), True, images)
    permutation = torch.arange(640).roll(64 * 2 - 5)  # image 5 lands in the third batch
    graphed.start_epoch(permutation, 0, 0, 0)
    for _ in range(4):
        graphed.step()
    losses = graphed.losses[:4].tolist()
    assert [v == v for v in losses] == [True, True, False, False]  # NaN from the third step on (weights too)


def test_training_on_the_gpu_end_to_end(tiny_mnist: Path, tmp_path: Path) -> None:
    flags = ["--data-dir", str(tiny_mnist), "--epochs", "3", "--batch-size", "32", "--device", "cuda", *TINY_FLAGS]
    result = cli("train", "--out", str(tmp_path / "graphed"), *flags)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "graphed" / "metrics.json").read_text())
    assert metrics["cuda_graphs"] and metrics["precision"] == "bf16" and metrics["step"] == 24
    assert metrics["device"] == torch.cuda.get_device_name()
    assert 0 < metrics["mse_per_pixel"] < 0.2
    plain = cli("train", "--out", str(tmp_path / "plain"), "--no-cuda-graphs", *flags)
    assert plain.returncode == 0, plain.stderr
    assert not json.loads((tmp_path / "plain" / "metrics.json").read_text())["cuda_graphs"]
    # the replayed steps' losses reach the history as the launched ones do
    graphed_rows, plain_rows = training.read_history(tmp_path / "graphed"), training.read_history(tmp_path / "plain")
    assert [(r["step"], r["train_steps"]) for r in graphed_rows] == [(8, 8), (16, 8), (24, 8)]
    assert [r["step"] for r in plain_rows] == [8, 16, 24]
    for g, p in zip(graphed_rows, plain_rows):
        assert math.isfinite(g["train_loss_nats"]) and g["train_loss_nats"] == pytest.approx(
            p["train_loss_nats"], rel=1e-2
        )
    # a GPU-trained checkpoint loads and decodes on a CPU
    model = training.load_model(tmp_path / "graphed")
    assert next(model.parameters()).device.type == "cpu"
    assert model.decode(torch.zeros(2, 8)).shape == (2, 1, 28, 28)
    for command in (
        ["evaluate", str(tmp_path / "graphed"), "--device", "cuda", "--iw-samples", "5", "--json"],
        ["sampler", str(tmp_path / "graphed")],
        ["anomaly", str(tmp_path / "graphed"), "--ood", "mnist", "--device", "cuda", "--limit", "32"],
    ):
        done = cli(
            *command,
            "--data-dir",
            str(tiny_mnist),
            *(["--ood-data-dir", str(tiny_mnist)] if "anomaly" in command else []),
        )
        assert done.returncode == 0, (command, done.stderr)


def test_a_gpu_run_resumed_mid_epoch_matches_one_run(tiny_mnist: Path, tmp_path: Path) -> None:
    flags = [
        "--data-dir",
        str(tiny_mnist),
        "--epochs",
        "3",
        "--batch-size",
        "32",
        "--lr-schedule",
        "constant",
        "--device",
        "cuda",
        *TINY_FLAGS,
    ]
    assert cli("train", "--out", str(tmp_path / "straight"), *flags).returncode == 0
    assert cli("train", "--out", str(tmp_path / "split"), "--max-steps", "11", *flags).returncode == 0
    resumed = cli(
        "train",
        "--out",
        str(tmp_path / "split"),
        "--resume",
        "--max-steps",
        "0",
        "--data-dir",
        str(tiny_mnist),
        "--quiet",
    )
    assert resumed.returncode == 0, resumed.stderr
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "split" / "model.safetensors"))
    exact = all(torch.equal(a[k], b[k]) for k in a)
    print(f"GPU resume bit-identical: {exact}")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=1e-4)


@dataclass(frozen=True)
class _GroupOfOne(distributed.Processes):
    """Process 0 of a one-process group, taking the data-parallel path a world of one skips."""

    @property
    def parallel(self) -> bool:
        return True


def test_the_nccl_path_trains_as_one_process_does(
    tiny_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recwarn: pytest.WarningsRecorder
) -> None:
    # NCCL wants a GPU per process, so torchrun's two-process run needs two GPUs; a group of one
    # still runs NCCL's set-up, DistributedDataParallel's gradient all-reduces over NCCL, the
    # loss and verdict all-reduces and the barriers. With one process they average nothing, so
    # the run must end where the plain one ends.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for name, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(name, value)
    backends = []

    def start_group_of_one(device: torch.device) -> tuple[distributed.Processes, torch.device]:
        device = torch.device("cuda", 0)
        distributed.join(device)  # as start() joins torchrun's group
        backends.append(distributed.dist.get_backend())
        return _GroupOfOne(), device

    model_config = ModelConfig(conv_channels=(4, 8, 8), hidden_dim=16)
    train_config = TrainConfig(epochs=2, batch_size=32, device="cuda", cuda_graphs=False, weight_decay=0.1)
    plain = train(model_config, train_config, tmp_path / "plain", tiny_mnist, progress=False)
    monkeypatch.setattr(distributed, "start", start_group_of_one)
    grouped = train(model_config, train_config, tmp_path / "nccl", tiny_mnist, progress=False)
    assert backends == ["nccl"] and not distributed.dist.is_initialized()  # joined, then left
    # neither "barrier(): using the device under current context" nor DDP's stride warning
    assert not [str(w.message) for w in recwarn if "barrier" in str(w.message) or "strides" in str(w.message)]
    assert grouped["step"] == plain["step"] == 16
    a = load_file(str(tmp_path / "plain" / "model.safetensors"))
    b = load_file(str(tmp_path / "nccl" / "model.safetensors"))
    print(f"NCCL group of one bit-identical to the plain run: {all(torch.equal(a[k], b[k]) for k in a)}")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)
    assert grouped["mse_per_pixel"] == pytest.approx(plain["mse_per_pixel"], rel=1e-3)
    rows = training.read_history(tmp_path / "nccl")
    assert [r["step"] for r in rows] == [8, 16]
    for g, p in zip(rows, training.read_history(tmp_path / "plain")):
        # the NCCL run's logged losses are all-reduced sums over the group, the plain run's its own
        assert g["train_loss_nats"] == pytest.approx(p["train_loss_nats"], rel=1e-4)


@pytest.mark.parametrize("channels", [1, 3])
def test_gradients_differ_from_their_weights_strides_only_in_size_one_dimensions(channels: int) -> None:
    # why training.distributed.join hides DistributedDataParallel's "Grad strides do not match
    # bucket view strides": the gradients of a bf16 step on the GPU come in their weights' memory
    # order, their strides differing (if at all) only where a dimension has size 1
    torch.manual_seed(0)
    model = ConvVAE(ModelConfig(channels=channels)).to("cuda", memory_format=torch.channels_last)
    x = torch.rand(16, channels, 28, 28, device="cuda").contiguous(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits, mu, logvar = model(x, None, None, torch.randn(16, 8, device="cuda"))
    vae_loss(logits, x, mu, logvar).total.sum().backward()
    differing = []
    for name, p in model.named_parameters():
        if p.grad.stride() != p.stride():
            differing.append(name)
            assert all(size == 1 for size, a, b in zip(p.shape, p.stride(), p.grad.stride()) if a != b), (
                name,
                p.shape,
                p.stride(),
                p.grad.stride(),
            )
    print(f"{channels} channel(s): strides differ only in size-1 dimensions for {differing}")


def test_a_real_gpu_out_of_memory_stops_training_in_one_line(tiny_mnist: Path, tmp_path: Path) -> None:
    # a fresh process whose allocator may hold about 140 KB (a millionth of an H200): the
    # weights' first 2-MB block is refused with torch's real OutOfMemoryError
    script = (
        "import sys, torch; torch.cuda.set_per_process_memory_fraction(1e-6); "
        "from training.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    out = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            "train",
            "--out",
            str(out),
            "--data-dir",
            str(tiny_mnist),
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--device",
            "cuda",
            *TINY_FLAGS,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(result.stderr.strip())
    assert result.returncode == 2
    assert result.stderr.startswith("error: The GPU ran out of memory (it needed ")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"stopped, so {out} holds no checkpoint yet (lower --batch-size than 32" in result.stderr
    assert not (out / "model.safetensors").exists()


def test_a_data_set_larger_than_the_free_gpu_memory_is_refused() -> None:
    free, total = torch.cuda.mem_get_info()
    with pytest.raises(
        training.TrainingError,
        match=rf"the GPU has {free / 1e9:.1f} of its {total / 1e9:.1f} GB free; "
        r"train on smaller or fewer images, or pass --device cpu\.$",
    ):
        check_fits_on_gpu(free + 10**9, torch.device("cuda"))
    check_fits_on_gpu(free // 2, torch.device("cuda"))


def test_a_conditional_rgb_folder_trains_on_the_gpu_as_kernel_by_kernel(tmp_path: Path) -> None:
    # the captured step with labels (a conditional model gathers each batch's labels on the GPU)
    # and three channels: the MNIST runs above have neither

    folder = make_folder(tmp_path / "art", per_class=40, size=(40, 40))
    flags = [
        "--dataset",
        "folder",
        "--data-dir",
        str(folder),
        "--image-size",
        "32",
        "--channels",
        "3",
        "--conditional",
        "--epochs",
        "3",
        "--batch-size",
        "16",
        "--warmup-steps",
        "0",
        "--device",
        "cuda",
        *TINY_FLAGS,
    ]
    for name, extra in (("graphed", []), ("plain", ["--no-cuda-graphs"])):
        result = cli("train", "--out", str(tmp_path / name), *flags, *extra)
        assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "graphed" / "metrics.json").read_text())
    assert metrics["cuda_graphs"] and 0 < metrics["mse_per_pixel"] < 0.2
    graphed_rows, plain_rows = training.read_history(tmp_path / "graphed"), training.read_history(tmp_path / "plain")
    assert [r["step"] for r in graphed_rows] == [r["step"] for r in plain_rows] and len(graphed_rows) == 3
    for g, p in zip(graphed_rows, plain_rows):
        assert g["train_loss_nats"] == pytest.approx(p["train_loss_nats"], rel=1e-2)
        assert g["test_neg_elbo_nats"] == pytest.approx(p["test_neg_elbo_nats"], rel=1e-2)
    model = training.load_model(tmp_path / "graphed")  # on the CPU
    assert model.config.num_classes == 2
    assert model.decode(torch.zeros(2, 8), torch.tensor([0, 1])).shape == (2, 3, 32, 32)
    # Not compared: the weights themselves. Adam turns the two loops' last-bit differences into
    # whole steps where a gradient is near 0: on an H200 the label-reading columns of
    # decoder.0.weight had moved 46% apart after these 12 steps, with the losses within 1%.
    # That each step gathers the labels of its images is checked bit for bit on the CPU
    # (tests/test_graphed.py, conditional).
