"""The training loop: seed, train an epoch, evaluate under no_grad, checkpoint, log a line.

The whole data set sits in one tensor on the training device; each step slices a batch out of
a seeded permutation, so a run is reproducible and can resume mid-epoch with the same result
as if it had never stopped.
"""

from __future__ import annotations

import math
import re
import shutil
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Iterator

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from training.checkpoint import (
    METRICS,
    STATE,
    STATE_JSON,
    WEIGHTS,
    CheckpointError,
    atomic_save_tensors,
    atomic_write_json,
    read_config,
    read_history,
    read_json,
    read_tensors,
    save_model,
    versions,
    write_history,
)
from training import distributed
from training.adam import Adam
from training.data import DATASET_NAMES, FOLDER, load_data
from training.evaluate import check_same_files, elbo_metrics, test_metrics
from training.graphed import GraphedSteps
from training.images import files_fingerprint
from training.model import LOSSES, ConvVAE, ModelConfig, vae_loss

DEVICES = ("auto", "cpu", "cuda")
LR_SCHEDULES = ("wsd", "cosine", "constant")
PRECISIONS = ("auto", "bf16", "fp32")
INITS = ("pytorch", "kaiming")
DECAY_FRACTION = 0.3  # 'wsd': the last 30% of the steps decay the learning rate to 0
# what a resumed run may change (resume_configs): where it stops and where it runs
RESUMABLE = ("epochs", "max_steps", "device")


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = "mnist"
    epochs: int = 30
    max_steps: int = 0  # 0: no limit beyond epochs
    batch_size: int = 128
    lr: float = 2e-3
    # "wsd": warm-up, stable, then a cosine decay to 0 over the last 30% of the steps; "cosine":
    # decay from the first step; "constant". Each after warmup_steps of linear warm-up.
    lr_schedule: str = "wsd"
    warmup_steps: int = 50
    # AdamW's decoupled decay on weights (not biases), each step by lr·weight_decay
    weight_decay: float = 0.0
    # the weights' starting values: "pytorch", its layers' own (the bundled models'), or
    # "kaiming", N(0, 2 / fan_in) (init_kaiming)
    init: str = "pytorch"
    loss: str = "bce"
    beta: float = 1.0
    seed: int = 0
    device: str = "auto"
    # "auto": bf16 autocast on CUDA and on CPUs with native bf16 (AVX512-BF16, AMX), else fp32
    precision: str = "auto"
    log_every: int = 20  # steps between progress-bar updates and NaN checks
    # epochs between test-set evaluations and checkpoints (the last epoch always gets both): each
    # costs ~50 ms on a GPU, where an epoch of batch 512 takes 120
    eval_every: int = 1
    # on a GPU, one process: capture the training step as a CUDA graph and replay it
    # (training/graphed.py); False runs the same loop kernel by kernel
    cuda_graphs: bool = True

    def __post_init__(self) -> None:
        if self.dataset not in DATASET_NAMES:
            raise ValueError(f"dataset must be one of {DATASET_NAMES}, got {self.dataset!r}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.max_steps < 0:
            raise ValueError(f"max_steps must be 0 (no limit) or positive, got {self.max_steps}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be 0 (none) or positive, got {self.warmup_steps}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(f"weight_decay must be 0 or a positive number, got {self.weight_decay}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if not (self.beta >= 0 and math.isfinite(self.beta)):
            raise ValueError(f"beta must be a non-negative number, got {self.beta}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.log_every < 1:
            raise ValueError(f"log_every must be positive, got {self.log_every}")
        if self.eval_every < 1:
            raise ValueError(f"eval_every must be a positive number of epochs, got {self.eval_every}")


# seed: the write-up's recipe, 784·MSE + KL, Adam lr 5e-4, batch 32, 2000 iterations.
# fast: the bundled model's quality (test MSE ≤ 0.012, kNN-5 ≥ 0.96) soonest: met at seeds 0-2 on
# an H200 in 18.1-18.7 s, whole command (README, Benchmarks), and at seeds 0-1 on the CPU.
RECIPES = {
    "seed": dict(loss="mse", lr=5e-4, lr_schedule="constant", warmup_steps=0, weight_decay=0.0, batch_size=32, max_steps=2000,
                 beta=1.0, precision="fp32"),
    "fast": dict(epochs=60, batch_size=256, lr=3e-3, weight_decay=0.1, eval_every=10, init="kaiming"),
}


class TrainingError(Exception):
    """Training cannot start or go on; the message is one sentence. EVERY_PROCESS: raised by
    all processes of a data-parallel run at once, from a verdict they share, so process 0
    alone need print it."""

    def __init__(self, message: str, every_process: bool = False) -> None:
        super().__init__(message)
        self.every_process = every_process


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM arrived; a resumable checkpoint was written."""

    def __init__(self, signum: int, step: int, folder: Path) -> None:
        super().__init__(f"Interrupted at step {step}; resume with --resume --out {folder}.")
        self.exit_code = 128 + signum


def learning_rate(config: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate for STEP (0-based): a pure function of the step, so resuming needs
    no scheduler state."""
    lr = config.lr * min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else config.lr
    if config.lr_schedule == "constant":
        return lr
    decay_start = (1 - DECAY_FRACTION) * total_steps if config.lr_schedule == "wsd" else 0.0
    if step < decay_start:
        return lr
    return 0.5 * lr * (1 + math.cos(math.pi * (step - decay_start) / (total_steps - decay_start)))


def planned_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    """The optimizer steps a run takes: its epochs', or max_steps where that is fewer."""
    total = config.epochs * steps_per_epoch
    return min(total, config.max_steps) if config.max_steps else total


def saved_train_config(train: dict) -> TrainConfig:
    """The TrainConfig of a checkpoint's config.json "train" section, for showing it: fields it
    predates take their defaults (as resuming it would), fields from a newer version are left out."""
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{key: value for key, value in train.items() if key in known})


def learning_rates(config: TrainConfig, total_steps: int, device: torch.device) -> Tensor:
    """The whole run's schedule, (TOTAL_STEPS,) float32 on DEVICE: learning_rate of every step,
    for a CUDA graph, which reads each step's rate from device memory."""
    return torch.tensor([learning_rate(config, s, total_steps) for s in range(total_steps)], dtype=torch.float32,
                        device=device)


def bf16_autocast(precision: str, device: torch.device) -> bool:
    """Whether to train under bf16 autocast. On a CPU only when it computes bf16 natively:
    elsewhere oneDNN emulates it, slower than fp32."""
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return True
    # private but stable since torch 1.12; a torch without it gets fp32
    native = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(native and native())


@torch.no_grad()
def init_output_bias(model: ConvVAE, images: Tensor) -> None:
    """Start the decoder at the data's mean intensity (per channel) instead of 0.5: the first
    few hundred steps otherwise go into learning that constant (measured on MNIST: test MSE
    after one epoch 0.0233 vs 0.0296)."""
    mean = images.float().mean(dim=(0, 2, 3)).clamp(1e-3, 1 - 1e-3)  # (C,)
    model.decoder[-1].bias.copy_(torch.log(mean / (1 - mean)))


@torch.no_grad()
def init_kaiming(model: ConvVAE) -> None:
    """He et al. (2015): every weight ~ N(0, 2 / fan_in), fan_in the inputs one output unit
    sums (a dense layer's input features; a convolution's, plain or transposed, input channels
    times kernel area), the variance that keeps ReLU activations from shrinking layer by layer;
    biases as the layers left them. PyTorch's default draws the plain layers' weights with a
    sixth of that variance, so a short run spends longer in the phase where the decoder draws
    the mean image: one MNIST epoch at batch 256 ends at a test MSE of 0.0212-0.0223 from this
    start (seeds 0-4) against 0.0264-0.0340 from PyTorch's (seeds 0-2; README). Draws from
    torch's global generator: seeded, so a run starts the same each time."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            fan_in = module.in_features
        elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
        else:
            continue
        module.weight.normal_(0.0, math.sqrt(2.0 / fan_in))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for but PyTorch sees no CUDA GPU; use --device cpu.")
    return torch.device(name)


@contextmanager
def deferred_signals() -> Iterator[list[int]]:
    """Turn SIGINT/SIGTERM into a flag the loop checks between steps, so that a step is never
    cut in half; a second Ctrl-C falls through to the default behaviour."""
    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if received and signum == signal.SIGINT:
            raise KeyboardInterrupt
        received.append(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def check_writable(folder: Path, needed_bytes: int) -> None:
    """Fail before training, not after an hour, when --out cannot take a checkpoint."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise TrainingError(f"Cannot write to --out {folder} ({e.strerror or e}); choose another folder.") from e
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise TrainingError(
            f"--out {folder} has {free / 1e6:.1f} MB free but a checkpoint needs about "
            f"{needed_bytes / 1e6:.1f} MB; free some space or choose another folder."
        )


def _epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def train_step(stepper: nn.Module, optimizer: Adam, x: Tensor, y: Tensor | None, eps: Tensor,
               generator: torch.Generator, bf16: bool, loss: str, beta: float, divisor: int) -> Tensor:
    """One optimizer step, kernel by kernel, on images X (B, C, H, W) (labels Y (B,)) with
    reparameterization noise EPS (B, D); the gradient is that of the summed loss / DIVISOR.
    STEPPER is the model or its DistributedDataParallel wrapper. Returns the batch's summed
    loss, () and not synced."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        logits, mu, logvar = stepper(x, generator, y, eps)
    parts = vae_loss(logits, x, mu, logvar, loss, beta)
    optimizer.zero_grad()
    parts.total.div(divisor).backward()
    optimizer.step()
    return parts.total.detach()


def device_name(device: torch.device) -> str:
    """'NVIDIA H200' or 'cpu (2 threads)', for metrics and benchmark reports."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"cpu ({threads} thread{'s' if threads > 1 else ''})"


def use_graphed_steps(config: TrainConfig, device: torch.device, processes: distributed.Processes) -> bool:
    """Whether the loop replays a captured step (GraphedSteps) instead of launching each kernel:
    on a CUDA device, in a single process (DistributedDataParallel's gradient hooks are not
    captured), unless the config turns it off."""
    return config.cuda_graphs and device.type == "cuda" and not processes.parallel


def save_training_state(folder: Path, model: ConvVAE, optimizer: Adam, generator: torch.Generator,
                        step: int, config: dict, elapsed_s: float) -> None:
    """Weights, config, then the resumable state; each file atomically."""
    save_model(folder, model, config)
    tensors = {**optimizer.state_tensors(), "rng.noise": generator.get_state()}
    atomic_save_tensors(folder / STATE, tensors)
    atomic_write_json(folder / STATE_JSON, {"step": step, "elapsed_s": elapsed_s, "noise_device": str(generator.device),
                                            "adam": optimizer.hyperparameters()})


def _run_config(model_config: ModelConfig, train_config: TrainConfig, dataset: dict, extra: dict) -> dict:
    return {
        "model": model_config.to_dict(),
        "train": asdict(train_config),
        "dataset": dataset,
        "versions": versions(),
        **extra,
    }


def train(model_config: ModelConfig, train_config: TrainConfig, out: str | Path,
          data_dir: str | Path | None = None, resume: bool = False, progress: bool = True) -> dict:
    """Train, checkpoint into OUT after every epoch and at the end, and return the metrics.

    Raises TrainingError (bad --out, non-finite loss, the GPU's memory exhausted), TrainingInterrupted (SIGINT/SIGTERM,
    after writing a resumable checkpoint), DataError, CheckpointError (bad --resume folder)."""
    out = Path(out)
    processes, device = distributed.start(pick_device(train_config.device))
    try:
        metrics = _train(model_config, train_config, out, data_dir, resume, progress and processes.main,
                         processes, device)
        distributed.wait_for_all(processes)  # process 0 may still be evaluating and saving
        return metrics
    except torch.OutOfMemoryError as e:  # torch's own message is a paragraph about its allocator
        tried = re.search(r"Tried to allocate ([\d.]+ \w+)", str(e))
        raise TrainingError(
            f"The GPU ran out of memory{f' (it needed {tried[1]} more)' if tried else ''}; stopped, {_kept(out)} "
            f"(lower --batch-size than {train_config.batch_size}, train on smaller or fewer images, "
            f"free the GPU of other programs, or pass --device cpu).") from e
    finally:
        distributed.stop()


def check_fits_on_gpu(data_bytes: int, device: torch.device) -> None:
    """Refuse, before copying it, a data set larger than the GPU's free memory (it lives there
    whole, for the steps' batch gathers), rather than fail in the copy."""
    if device.type != "cuda":
        return
    free, total = torch.cuda.mem_get_info(device)
    if data_bytes > free:
        raise TrainingError(
            f"The data set takes {data_bytes / 1e9:.1f} GB as float32 and the GPU has {free / 1e9:.1f} of its "
            f"{total / 1e9:.1f} GB free; train on smaller or fewer images, or pass --device cpu.")


def _train(model_config: ModelConfig, train_config: TrainConfig, out: Path, data_dir: str | Path | None,
           resume: bool, progress: bool, processes: distributed.Processes, device: torch.device) -> dict:
    torch.manual_seed(train_config.seed)
    # channels-last (NHWC) convolutions: 1.6x the images/s of NCHW on this project's 2-core CPU
    # (oneDNN), and the layout tensor cores want on a GPU
    model = ConvVAE(model_config)
    if train_config.init == "kaiming" and not resume:  # drawn on the CPU: the same start on any device
        init_kaiming(model)
    model = model.to(device, memory_format=torch.channels_last)
    weight_bytes = sum(p.numel() * 4 for p in model.parameters())
    if processes.main:
        check_writable(out, needed_bytes=4 * weight_bytes + (1 << 20))
    # fused: one kernel for all parameters instead of a dozen element-wise passes per tensor
    optimizer = Adam(model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay)
    generator = torch.Generator(device=device).manual_seed(train_config.seed)
    step, elapsed_before = 0, 0.0
    history: list[dict] = []  # history.jsonl's rows, rewritten whole at each save
    if resume:
        step, elapsed_before = _resume_into(out, model, optimizer, generator)
        # rows past the saved step (a save that stopped between its files) are not this run's past
        history = [row for row in read_history(out) if row["step"] <= step]
        if train_config.dataset == FOLDER:  # the images it was training on, split as they were
            saved = read_config(out)["dataset"]
            data_dir = data_dir or saved.get("path")
            if data_dir:
                check_same_files(data_dir, saved)

    train_split, test_split, class_names = load_data(train_config.dataset, data_dir, model_config.image_shape,
                                                     seed=train_config.seed)
    if model_config.num_classes and model_config.num_classes != len(class_names):
        raise TrainingError(f"the conditional model has {model_config.num_classes} classes but "
                            f"{train_config.dataset} has {len(class_names)}.")
    dataset = {"name": train_config.dataset, "class_names": list(class_names)}
    if train_config.dataset == FOLDER:  # evaluate and atlas find the same images and split again
        dataset.update(path=str(Path(data_dir).resolve()), split_seed=train_config.seed,
                       train_images=len(train_split), test_images=len(test_split),
                       files_sha256=files_fingerprint(data_dir)[1])
    check_fits_on_gpu(train_split.images.nbytes + test_split.images.nbytes, device)
    x_train = train_split.images.to(device)
    if not resume:
        init_output_bias(model, x_train)
    y_train = train_split.labels.to(device)
    n, batch = len(x_train), train_config.batch_size
    if batch % processes.world:
        raise TrainingError(f"--batch-size {batch} does not split evenly over {processes.world} processes.")
    local = batch // processes.world  # this process's slice of each global batch
    mine = slice(processes.rank * local, (processes.rank + 1) * local)
    stepper = DistributedDataParallel(model) if processes.parallel else model
    steps_per_epoch = n // batch
    if steps_per_epoch == 0:
        raise TrainingError(f"--batch-size {batch} is larger than the {n} training images.")
    total_steps = planned_steps(train_config, steps_per_epoch)

    run_config = _run_config(model_config, train_config, dataset, {"steps_per_epoch": steps_per_epoch})
    use_amp = bf16_autocast(train_config.precision, device)
    graphed = None
    if use_graphed_steps(train_config, device, processes):
        schedule = learning_rates(train_config, total_steps, device)
        graphed = GraphedSteps(model, optimizer, x_train, y_train, batch, schedule, steps_per_epoch,
                               train_config.loss, train_config.beta, use_amp, vae_loss)
    x_test = test_split.images.to(device)  # evaluated every eval_every epochs: copied once
    started = time.perf_counter()
    images_seen = 0
    # each epoch's steps alone, not evaluation or saving, for images/s (a GPU's first epoch
    # includes capturing the graph)
    epoch_seconds: list[float] = []
    last_metrics: dict = {}
    train_loss = [0.0, 0]  # the per-image training losses' sum and count since the last history row

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - started

    with deferred_signals() as signals:
        while step < total_steps:
            epoch = step // steps_per_epoch
            epoch_started = time.perf_counter()
            permutation = _epoch_permutation(train_config.seed, epoch, n)
            if graphed is not None:  # copied into the graph's buffer
                graphed.start_epoch(permutation, train_config.seed, epoch, step)
            else:
                permutation = permutation.to(device)
            first = step % steps_per_epoch
            last = min(steps_per_epoch, first + total_steps - step)
            bar = tqdm(range(first, last), desc=f"epoch {epoch + 1}/{math.ceil(total_steps / steps_per_epoch)}",
                       unit="step", disable=not progress, leave=True, dynamic_ncols=True, file=sys.stderr)
            window: list[torch.Tensor] = []
            window_start, window_time = step, time.perf_counter()
            model.train()
            for b in bar:
                optimizer.lr = learning_rate(train_config, step, total_steps)
                if graphed is not None:  # the same step, replayed; its loss goes to graphed.losses
                    graphed.step()
                else:
                    rows = permutation[b * batch:(b + 1) * batch][mine]
                    x, y = x_train[rows].contiguous(memory_format=torch.channels_last), y_train[rows]
                    # the whole global batch's noise, so N processes add what one process would
                    eps = torch.randn((batch, model_config.latent_dim), generator=generator, device=device)[mine]
                    # per-process mean; DistributedDataParallel averages over processes: the global mean
                    window.append(train_step(stepper, optimizer, x, y, eps, generator, use_amp,
                                             train_config.loss, train_config.beta, local))
                step += 1
                images_seen += batch
                # processes check signals together, at window ends, so none waits on a departed one
                window_end = step - window_start == train_config.log_every or b == last - 1
                if window_end or (signals and not processes.parallel):
                    if processes.parallel and distributed.any_process(bool(signals), processes, device):
                        signals = signals or [signal.SIGTERM]
                    # the global batch's mean losses, one sync per window
                    window_sums = (graphed.losses[b + 1 - (step - window_start):b + 1] if graphed is not None
                                   else distributed.summed(torch.stack(window), processes))
                    losses = window_sums.div(batch).tolist()
                    train_loss[0] += sum(losses)
                    train_loss[1] += len(losses)
                    bad = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
                    if bad is not None:
                        raise TrainingError(
                            f"The loss became {losses[bad]} at step {window_start + bad + 1}; stopped "
                            f"without saving, {_kept(out)} (try a lower --lr).",
                            every_process=True,  # the losses were summed over the processes
                        )
                    now = time.perf_counter()
                    bar.set_postfix(loss=f"{losses[-1]:.2f}", img_s=f"{len(losses) * batch / (now - window_time):.0f}")
                    window, window_start, window_time = [], step, now
                if signals and (window_end or not processes.parallel):
                    if processes.main:
                        save_training_state(out, model, optimizer, generator, step, run_config, elapsed())
                    distributed.wait_for_all(processes)  # every process stops at this step, after the save
                    bar.close()
                    raise TrainingInterrupted(signals[0], step, out)
            bar.close()
            epoch_seconds.append(time.perf_counter() - epoch_started)
            if step == total_steps or (epoch + 1) % train_config.eval_every:
                continue  # the final evaluation and save are below
            if processes.main:  # process 0 evaluates and saves; the others wait for its verdict
                model.eval()
                last_metrics = elbo_metrics(model, x_test, train_config.loss, test_split.labels)
            stop_if_encoder_dead(last_metrics if processes.main else None, x_test, step, train_config, out,
                                 processes, device)
            if not processes.main:
                continue
            save_training_state(out, model, optimizer, generator, step, run_config, elapsed())
            atomic_write_json(out / METRICS, {**last_metrics, "step": step, "final": False})
            add_history_row(history, history_row(step, steps_per_epoch, elapsed(), optimizer.lr, train_loss, last_metrics))
            write_history(out, history)
            train_loss = [0.0, 0]
            if progress:
                print(f"step {step}: test -ELBO {last_metrics['neg_elbo_nats']:.2f} nats "
                      f"(recon {last_metrics['reconstruction_nats']:.2f}, KL {last_metrics['kl_nats']:.2f}), "
                      f"MSE {last_metrics['mse_per_pixel']:.5f}", file=sys.stderr)

    train_seconds = elapsed()
    metrics = None
    if processes.main:
        model.eval()
        metrics = test_metrics(model, train_split.images, train_split.labels, test_split.images,
                               test_split.labels, train_config.loss)
    stop_if_encoder_dead(metrics, test_split.images, step, train_config, out, processes, device)
    if not processes.main:
        return {}
    metrics.update({
        "step": step,
        "final": True,
        "train_seconds": train_seconds,
        "images_per_second": images_seen / max(sum(epoch_seconds), 1e-9),
        "device": device_name(device),
        "precision": "bf16" if use_amp else "fp32",
        "cuda_graphs": graphed is not None,
        "epoch_seconds": [round(s, 4) for s in epoch_seconds],
    })
    save_training_state(out, model, optimizer, generator, step, run_config, train_seconds)
    atomic_write_json(out / METRICS, metrics)
    add_history_row(history, history_row(step, steps_per_epoch, train_seconds, optimizer.lr, train_loss, metrics))
    write_history(out, history)
    return metrics


# the test figures a history row keeps (knn5_accuracy in the final row only: it encodes the training set)
HISTORY_METRICS = ("neg_elbo_nats", "reconstruction_nats", "kl_nats", "mse_per_pixel", "active_units",
                   "knn5_accuracy")


def add_history_row(history: list[dict], row: dict) -> None:
    """ROW appended to HISTORY, or, when the last row is at the same step (a finished run
    resumed, which only evaluates again), in its place with the training facts of the steps
    that led there kept: this process ran none, and its optimizer's rate was never set."""
    if history and history[-1]["step"] == row["step"]:
        kept = ("seconds", "lr", "train_loss_nats", "train_steps")
        history[-1] = {**row, **{key: history[-1][key] for key in kept if key in history[-1]}}
    else:
        history.append(row)


def history_row(step: int, steps_per_epoch: int, seconds: float, lr: float, train_loss: list,
                metrics: dict) -> dict:
    """One line of history.jsonl: where training was (step, epoch, seconds of training), the learning
    rate of its last step, the mean per-image training loss (nats; β-weighted as trained) over
    the TRAIN_LOSS [sum, count] steps since the previous line (None for none), and the test
    figures of METRICS, prefixed test_."""
    total, steps = train_loss
    return {"step": step, "epoch": round(step / steps_per_epoch, 4), "seconds": round(seconds, 3), "lr": lr,
            "train_loss_nats": total / steps if steps else None, "train_steps": steps,
            **{f"test_{key}": metrics[key] for key in HISTORY_METRICS if key in metrics}}


def stop_if_encoder_dead(metrics: dict | None, test_images: torch.Tensor, step: int, train_config: TrainConfig,
                         out: Path, processes: distributed.Processes, device: torch.device) -> None:
    """Raise TrainingError, before anything is saved and on every process, when the encoder
    gives every test image the same latent (METRICS: process 0's evaluation, None on the
    others): a layer whose ReLUs are all off passes no gradient, so no later step can revive
    it, and the decoder learns to draw the mean image (a loss near 206 nats on MNIST). Seen in
    a benchmark at batch 512 with lr 4e-3: too large an early step."""
    dead = (metrics is not None and metrics["latent_spread"] == 0 and len(test_images) > 1
            and not bool((test_images == test_images[0]).all()))  # identical images have one latent
    if distributed.any_process(dead, processes, device):
        raise TrainingError(
            f"At step {step} the encoder gave every test image the same latent (a layer's units all switched "
            f"off, which no later step can undo); stopped without saving, {_kept(out)} (retrain with a "
            f"lower --lr than {train_config.lr:g} or a longer --warmup-steps than {train_config.warmup_steps}).",
            every_process=True)


def _kept(out: Path) -> str:
    """What a run stopped before saving leaves in OUT, for its message: a run stopped before
    its first checkpoint must not send the user looking for one."""
    if (out / WEIGHTS).is_file():
        return f"the last good checkpoint in {out} is intact"
    return f"so {out} holds no checkpoint yet"


def _resume_into(out: Path, model: ConvVAE, optimizer: Adam,
                 generator: torch.Generator) -> tuple[int, float]:
    read_config(out)  # format and model config checked
    if not (out / STATE_JSON).is_file():
        raise CheckpointError(f"{out} has no {STATE_JSON}, so it cannot be resumed; train a new model instead.")
    weights = read_tensors(out / WEIGHTS)
    state = read_tensors(out / STATE)
    meta = read_json(out / STATE_JSON)
    try:
        model.load_state_dict(weights)
        optimizer.load_state_tensors(state)
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{out} does not match the model being resumed ({str(e).splitlines()[0]}).") from e
    if meta.get("noise_device") == str(generator.device):
        generator.set_state(state["rng.noise"])
    else:  # resumed on another kind of device: its generator state does not carry over
        generator.manual_seed(int(meta["step"]) + 1)
    return int(meta["step"]), float(meta.get("elapsed_s", 0.0))


def resume_configs(out: str | Path, epochs: int | None, max_steps: int | None,
                   device: str | None) -> tuple[ModelConfig, TrainConfig]:
    """The configs a resumed run continues with: as saved, except the stopping point and
    the device, which the user may change."""
    config = read_config(out)
    model_config = ModelConfig.from_dict(dict(config["model"]))
    try:
        train_config = TrainConfig(**config["train"])
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{Path(out) / 'config.json'} has an invalid train config ({e}).") from e
    changes = {k: v for k, v in zip(RESUMABLE, (epochs, max_steps, device)) if v is not None}
    return model_config, replace(train_config, **changes)
