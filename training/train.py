"""The training loop, read top to bottom: set up a run, train an epoch, evaluate and save, stop.

The whole data set sits in one tensor on the training device; each step slices a batch out of
a seeded permutation, so a run is reproducible and can resume mid-epoch with the same result
as if it had never stopped. What any training loop shares (signals, saving, resuming, the
errors) is in training/loop.py.

    metrics = train(ModelConfig(), TrainConfig(epochs=30), "runs/x", data_dir="mnist/")
"""

from __future__ import annotations

import math
import signal
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from training import distributed
from training.adam import Adam
from training.checkpoint import (
    METRICS,
    CheckpointError,
    atomic_write_json,
    read_config,
    versions,
)
from training.data import DATASET_NAMES, FOLDER, Split, load_data
from training.evaluate import check_same_files, elbo_metrics, test_metrics
from training.graphed import GraphedSteps
from training.handwriting import Distortion, distort, epoch_distortions
from training.images import files_fingerprint
from training.loop import (
    PRECISIONS,
    Clock,
    LossWindow,
    SavedRun,
    TrainingError,
    TrainingInterrupted,
    bf16_autocast,
    check_fits_on_gpu,
    check_writable,
    deferred_signals,
    device_name,
    epoch_permutation,
    first_non_finite,
    kept,
    out_of_memory,
    pick_device,
    progress_bar,
    read_saved_run,
    record_history,
    save_state,
)
from training.model import LOSSES, ConvVAE, ModelConfig, vae_loss
from training.printed import printed_training_digits

DEVICES = ("auto", "cpu", "cuda")
LR_SCHEDULES = ("wsd", "cosine", "constant")
INITS = ("pytorch", "kaiming")
DECAY_FRACTION = 0.3  # 'wsd': the last 30% of the steps decay the learning rate to 0
# what a resumed run may change (resume_configs): where it stops and where it runs
RESUMABLE = ("epochs", "max_steps", "device")
# the test figures a history row keeps (knn5_accuracy in the final row only: it encodes the training set)
HISTORY_METRICS = ("neg_elbo_nats", "reconstruction_nats", "kl_nats", "mse_per_pixel", "active_units", "knn5_accuracy")


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
    # epochs between test-set evaluations and checkpoints (the last epoch always gets both): on a
    # GPU an evaluation costs a good part of an epoch
    eval_every: int = 1
    # on a GPU, one process: capture the training step as a CUDA graph and replay it
    # (training/graphed.py); False runs the same loop kernel by kernel
    cuda_graphs: bool = True
    # handwriting's variety drawn on each training image as it is used (training/handwriting.py):
    # the largest rotation (degrees), scale change, shear, shift (pixels), stroke thickening and
    # elastic displacement (pixels); 0 turns a kind off
    distort_rotation: float = 0.0
    distort_scale: float = 0.0
    distort_shear: float = 0.0
    distort_shift: float = 0.0
    distort_thickness: float = 0.0
    distort_elastic: float = 0.0
    # copies of the printed digits of 11 of the font designs Debian packages added to MNIST's
    # training split (training/printed.py): shapes MNIST's writers never drew; 0: none
    printed_digits: int = 0

    def distortion(self) -> Distortion:
        """The distortions as training/handwriting.py takes them (Distortion checks their ranges)."""
        return Distortion(
            rotation=self.distort_rotation,
            scale=self.distort_scale,
            shear=self.distort_shear,
            shift=self.distort_shift,
            thickness=self.distort_thickness,
            elastic=self.distort_elastic,
        )

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
        if self.printed_digits < 0:
            raise ValueError(f"printed_digits must be 0 (none) or a number of copies, got {self.printed_digits}")
        if self.printed_digits and self.dataset != "mnist":
            raise ValueError(f"printed digits join MNIST's training digits only, not {self.dataset}'s images")
        self.distortion()


# seed: the original project's recipe, 784·MSE + KL, Adam lr 5e-4, batch 32, 2000 iterations.
# fast: MNIST test MSE ≤ 0.012 and kNN-5 ≥ 0.96 in the fewest steps (docs/benchmarks.md).
# handwriting: every training digit distorted the ways handwriting varies (bench/handwriting.py
# measures what each kind buys on digits from elsewhere).
RECIPES = {
    "seed": dict(
        loss="mse",
        lr=5e-4,
        lr_schedule="constant",
        warmup_steps=0,
        weight_decay=0.0,
        batch_size=32,
        max_steps=2000,
        beta=1.0,
        precision="fp32",
    ),
    "fast": dict(epochs=60, batch_size=256, lr=3e-3, weight_decay=0.1, eval_every=10, init="kaiming"),
    "handwriting": dict(
        distort_rotation=15.0,
        distort_scale=0.15,
        distort_shear=0.3,
        distort_shift=2.0,
        distort_thickness=0.8,
        distort_elastic=2.0,
    ),
}


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


def learning_rates(config: TrainConfig, total_steps: int, device: torch.device) -> Tensor:
    """The whole run's schedule, (TOTAL_STEPS,) float32 on DEVICE: learning_rate of every step,
    for a CUDA graph, which reads each step's rate from device memory."""
    return torch.tensor(
        [learning_rate(config, s, total_steps) for s in range(total_steps)], dtype=torch.float32, device=device
    )


def planned_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    """The optimizer steps a run takes: its epochs', or max_steps where that is fewer."""
    total = config.epochs * steps_per_epoch
    return min(total, config.max_steps) if config.max_steps else total


def saved_train_config(train: dict) -> TrainConfig:
    """The TrainConfig of a checkpoint's config.json "train" section, for showing it: fields it
    predates take their defaults (as resuming it would), fields from a newer version are left out."""
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{key: value for key, value in train.items() if key in known})


@torch.no_grad()
def init_output_bias(model: ConvVAE, images: Tensor) -> None:
    """Start the decoder at the data's mean intensity (per channel) instead of 0.5: the first
    few hundred steps otherwise go into learning that constant (docs/model-notes.md)."""
    mean = images.float().mean(dim=(0, 2, 3)).clamp(1e-3, 1 - 1e-3)  # (C,)
    model.decoder[-1].bias.copy_(torch.log(mean / (1 - mean)))


@torch.no_grad()
def init_kaiming(model: ConvVAE) -> None:
    """He et al. (2015): every weight ~ N(0, 2 / fan_in), fan_in the inputs one output unit
    sums (a dense layer's input features; a convolution's, plain or transposed, input channels
    times kernel area), the variance that keeps ReLU activations from shrinking layer by layer;
    biases as the layers left them. PyTorch's default draws the plain layers' weights with a
    sixth of that variance, so a short run spends longer drawing the mean image
    (docs/model-notes.md). Draws from torch's global generator: seeded, so a run starts the
    same each time."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            fan_in = module.in_features
        elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
        else:
            continue
        module.weight.normal_(0.0, math.sqrt(2.0 / fan_in))


def train_step(
    stepper: nn.Module,
    optimizer: Adam,
    x: Tensor,
    y: Tensor | None,
    eps: Tensor,
    generator: torch.Generator,
    bf16: bool,
    loss: str,
    beta: float,
    divisor: int,
) -> Tensor:
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


def use_graphed_steps(config: TrainConfig, device: torch.device, processes: distributed.Processes) -> bool:
    """Whether the loop replays a captured step (GraphedSteps) instead of launching each kernel:
    on a CUDA device, in a single process (DistributedDataParallel's gradient hooks are not
    captured), unless the config turns it off."""
    return config.cuda_graphs and device.type == "cuda" and not processes.parallel


def save_training_state(
    folder: Path, model: ConvVAE, optimizer: Adam, generator: torch.Generator, step: int, config: dict, elapsed_s: float
) -> None:
    """Weights, config, then the resumable state; each file atomically."""
    tensors = {**optimizer.state_tensors(), "rng.noise": generator.get_state()}
    save_state(
        folder,
        model,
        config,
        tensors,
        {
            "step": step,
            "elapsed_s": elapsed_s,
            "noise_device": str(generator.device),
            "adam": optimizer.hyperparameters(),
        },
    )


# ---------------------------------------------------------------------------------------------
# A run: what its phases share


@dataclass(frozen=True)
class RunData:
    """The splits, and the arrays the steps and evaluations read, on the training device.
    KNN_SPLIT is the data set's own training split, the kNN vote's reference: TRAIN_SPLIT less
    any printed digits added to it."""

    train_split: Split
    test_split: Split
    knn_split: Split
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor


@dataclass
class Run:
    """Everything a training run holds between its phases. STEP counts optimizer steps taken."""

    model_config: ModelConfig
    config: TrainConfig
    out: Path
    progress: bool
    processes: distributed.Processes
    device: torch.device
    model: ConvVAE
    stepper: nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: Adam
    generator: torch.Generator  # the reparameterization noise of the kernel-by-kernel steps
    data: RunData
    steps_per_epoch: int
    total_steps: int
    run_config: dict  # config.json
    bf16: bool
    graphed: GraphedSteps | None = None
    history: list[dict] = field(default_factory=list)  # history.jsonl's rows, rewritten whole at each save
    step: int = 0
    clock: Clock = field(default_factory=Clock)  # seconds of training, a resumed run's before it too
    images_seen: int = 0
    # each epoch's steps alone, not evaluation or saving, for images/s (a GPU's first epoch
    # includes capturing the graph)
    epoch_seconds: list[float] = field(default_factory=list)
    losses: LossWindow = field(default_factory=LossWindow)  # since the last history row
    distortions: Tensor | None = None  # (N, PARAMETERS): this epoch's distortion of each image, if any

    @property
    def batch(self) -> int:
        return self.config.batch_size

    @property
    def mine(self) -> slice:
        """This process's slice of each global batch."""
        local = self.batch // self.processes.world
        return slice(self.processes.rank * local, (self.processes.rank + 1) * local)

    def save(self, seconds: float) -> None:
        save_training_state(self.out, self.model, self.optimizer, self.generator, self.step, self.run_config, seconds)


def train(
    model_config: ModelConfig,
    train_config: TrainConfig,
    out: str | Path,
    data_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Train, checkpoint into OUT after every epoch and at the end, and return the metrics.

    Raises TrainingError (bad --out, non-finite loss, the GPU's memory exhausted), TrainingInterrupted (SIGINT/SIGTERM,
    after writing a resumable checkpoint), DataError, CheckpointError (bad --resume folder)."""
    out = Path(out)
    processes, device = distributed.start(pick_device(train_config.device))
    try:
        run = set_up(model_config, train_config, out, data_dir, resume, progress and processes.main, processes, device)
        with deferred_signals() as signals:
            while run.step < run.total_steps:
                epoch = run.step // run.steps_per_epoch
                train_epoch(run, signals)
                if run.step < run.total_steps and (epoch + 1) % train_config.eval_every == 0:
                    evaluate_and_save(run)
        metrics = finish(run)
        distributed.wait_for_all(processes)  # process 0 may still be evaluating and saving
        return metrics
    except torch.OutOfMemoryError as e:
        raise out_of_memory(e, out, train_config.batch_size) from e
    finally:
        distributed.stop()


# ---------------------------------------------------------------------------------------------
# Set up: the model, its optimizer and noise, the data on the device, a resumed run's past


def set_up(
    model_config: ModelConfig,
    train_config: TrainConfig,
    out: Path,
    data_dir: str | Path | None,
    resume: bool,
    progress: bool,
    processes: distributed.Processes,
    device: torch.device,
) -> Run:
    model = new_model(model_config, train_config, resume, device)
    if processes.main:
        check_writable(out, needed_bytes=4 * sum(p.numel() * 4 for p in model.parameters()) + (1 << 20))
    # fused: one kernel for all parameters instead of a dozen element-wise passes per tensor
    optimizer = Adam(model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay)
    generator = torch.Generator(device=device).manual_seed(train_config.seed)
    saved = _resume_into(out, model, optimizer, generator) if resume else None
    if saved is not None and train_config.dataset == FOLDER:  # the images it was training on, split as they were
        recorded = read_config(out)["dataset"]
        data_dir = data_dir or recorded.get("path")
        if data_dir:
            check_same_files(data_dir, recorded)
    data, dataset = device_data(model_config, train_config, data_dir, device)
    if saved is None:
        init_output_bias(model, data.x_train)
    steps_per_epoch = check_batches(len(data.x_train), train_config.batch_size, processes)
    total_steps = planned_steps(train_config, steps_per_epoch)
    bf16 = bf16_autocast(train_config.precision, device)
    run = Run(
        model_config=model_config,
        config=train_config,
        out=out,
        progress=progress,
        processes=processes,
        device=device,
        model=model,
        stepper=DistributedDataParallel(model) if processes.parallel else model,
        optimizer=optimizer,
        generator=generator,
        data=data,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        run_config=run_config(model_config, train_config, dataset, steps_per_epoch),
        bf16=bf16,
    )
    if saved is not None:
        run.step, run.clock, run.history = saved.step, saved.clock, saved.history
    if use_graphed_steps(train_config, device, processes):
        run.graphed = graphed_steps(run)
    return run


def new_model(model_config: ModelConfig, train_config: TrainConfig, resume: bool, device: torch.device) -> ConvVAE:
    """The seeded model on DEVICE, channels-last (NHWC): the layout oneDNN's and the tensor
    cores' fast convolutions want."""
    torch.manual_seed(train_config.seed)
    model = ConvVAE(model_config)
    if train_config.init == "kaiming" and not resume:  # drawn on the CPU: the same start on any device
        init_kaiming(model)
    return model.to(device, memory_format=torch.channels_last)


def check_batches(n: int, batch: int, processes: distributed.Processes) -> int:
    """The steps of an epoch over N images in batches of BATCH, split over the PROCESSES."""
    if batch % processes.world:
        raise TrainingError(f"--batch-size {batch} does not split evenly over {processes.world} processes.")
    if n // batch == 0:
        raise TrainingError(f"--batch-size {batch} is larger than the {n} training images.")
    return n // batch


def run_config(model_config: ModelConfig, train_config: TrainConfig, dataset: dict, steps_per_epoch: int) -> dict:
    """config.json of the run."""
    return {
        "model": model_config.to_dict(),
        "train": asdict(train_config),
        "dataset": dataset,
        "versions": versions(),
        "steps_per_epoch": steps_per_epoch,
    }


def graphed_steps(run: Run) -> GraphedSteps:
    """The run's step captured as a CUDA graph, with the whole schedule on the device."""
    config = run.config
    return GraphedSteps(
        run.model,
        run.optimizer,
        run.data.x_train,
        run.data.y_train,
        config.batch_size,
        learning_rates(config, run.total_steps, run.device),
        run.steps_per_epoch,
        config.loss,
        config.beta,
        run.bf16,
        vae_loss,
        distortion=config.distortion() if config.distortion().active else None,
    )


def device_data(
    model_config: ModelConfig, train_config: TrainConfig, data_dir: str | Path | None, device: torch.device
) -> tuple[RunData, dict]:
    """The data set on DEVICE, with any printed digits added to its training split, and
    config.json's "dataset" (_load_data)."""
    own_split, test_split, dataset = _load_data(model_config, train_config, data_dir)
    train_split = own_split
    if train_config.printed_digits:
        printed = printed_training_digits(train_config.printed_digits, model_config.image_shape)
        train_split = Split(
            images=torch.cat([own_split.images, printed.images]),
            labels=torch.cat([own_split.labels, printed.labels]),
        )
        dataset["printed_digits"] = len(printed)
    check_fits_on_gpu(train_split.images.nbytes + test_split.images.nbytes, device)
    data = RunData(
        train_split=train_split,
        test_split=test_split,
        knn_split=own_split,
        x_train=train_split.images.to(device),
        y_train=train_split.labels.to(device),
        x_test=test_split.images.to(device),  # evaluated every eval_every epochs: copied once
    )
    return data, dataset


def _load_data(
    model_config: ModelConfig, train_config: TrainConfig, data_dir: str | Path | None
) -> tuple[Split, Split, dict]:
    """The training and test splits, and config.json's "dataset" (for a folder: where it is
    and how it was split, so that evaluate and atlas find the same test images)."""
    train_split, test_split, class_names = load_data(
        train_config.dataset, data_dir, model_config.image_shape, seed=train_config.seed
    )
    if model_config.num_classes and model_config.num_classes != len(class_names):
        raise TrainingError(
            f"the conditional model has {model_config.num_classes} classes but "
            f"{train_config.dataset} has {len(class_names)}."
        )
    dataset = {"name": train_config.dataset, "class_names": list(class_names)}
    if train_config.dataset == FOLDER:
        dataset.update(
            path=str(Path(data_dir).resolve()),
            split_seed=train_config.seed,
            train_images=len(train_split),
            test_images=len(test_split),
            files_sha256=files_fingerprint(data_dir)[1],
        )
    return train_split, test_split, dataset


def _resume_into(out: Path, model: ConvVAE, optimizer: Adam, generator: torch.Generator) -> SavedRun:
    """OUT's saved run, its weights, moments and noise loaded into MODEL, OPTIMIZER and GENERATOR."""
    saved = read_saved_run(out)
    try:
        model.load_state_dict(saved.weights)
        optimizer.load_state_tensors(saved.tensors)
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{out} does not match the model being resumed ({str(e).splitlines()[0]}).") from e
    if saved.meta.get("noise_device") == str(generator.device):
        generator.set_state(saved.tensors["rng.noise"])
    else:  # resumed on another kind of device: its generator state does not carry over
        generator.manual_seed(saved.step + 1)
    return saved


# ---------------------------------------------------------------------------------------------
# One epoch: the steps, a logging window at a time (loss, NaN check, signals)


def train_epoch(run: Run, signals: list[int]) -> None:
    """The steps of the epoch RUN.STEP is in, up to its end or the run's. Raises TrainingError
    at a non-finite loss, TrainingInterrupted (after saving) when a signal arrived."""
    config, processes = run.config, run.processes
    epoch = run.step // run.steps_per_epoch
    epoch_started = time.perf_counter()
    permutation = epoch_permutation(config.seed, epoch, len(run.data.x_train))
    distortion = config.distortion()
    if distortion.active:  # each image's distortion this epoch, on the device
        run.distortions = epoch_distortions(distortion, config.seed, epoch, len(run.data.x_train)).to(run.device)
    if run.graphed is not None:  # copied into the graph's buffers
        run.graphed.start_epoch(permutation, config.seed, epoch, run.step, run.distortions)
    else:
        permutation = permutation.to(run.device)
    first = run.step % run.steps_per_epoch
    last = min(run.steps_per_epoch, first + run.total_steps - run.step)
    bar = progress_bar(
        range(first, last), f"epoch {epoch + 1}/{math.ceil(run.total_steps / run.steps_per_epoch)}", run.progress
    )
    window: list[Tensor] = []  # the kernel-by-kernel steps' summed losses since the window began
    window_start, window_time = run.step, time.perf_counter()
    run.model.train()
    for b in bar:
        run.optimizer.lr = learning_rate(config, run.step, run.total_steps)
        if run.graphed is not None:  # the same step, replayed; its loss goes to graphed.losses
            run.graphed.step()
        else:
            window.append(_eager_step(run, permutation, b))
        run.step += 1
        run.images_seen += run.batch
        # processes check signals together, at window ends, so none waits on a departed one
        window_end = run.step - window_start == config.log_every or b == last - 1
        if window_end or (signals and not processes.parallel):
            if processes.parallel and distributed.any_process(bool(signals), processes, run.device) and not signals:
                signals.append(signal.SIGTERM)
            # the global batch's mean losses, one sync per window
            sums = (
                run.graphed.losses[b + 1 - (run.step - window_start) : b + 1]
                if run.graphed is not None
                else distributed.summed(torch.stack(window), processes)
            )
            losses = sums.div(run.batch).tolist()
            run.losses.add(losses)
            error = first_non_finite(losses, window_start, run.out)
            if error is not None:
                raise error
            now = time.perf_counter()
            bar.set_postfix(loss=f"{losses[-1]:.2f}", img_s=f"{len(losses) * run.batch / (now - window_time):.0f}")
            window, window_start, window_time = [], run.step, now
        if signals and (window_end or not processes.parallel):
            if processes.main:
                run.save(run.clock.elapsed())
            distributed.wait_for_all(processes)  # every process stops at this step, after the save
            bar.close()
            raise TrainingInterrupted(signals[0], run.step, run.out)
    bar.close()
    run.epoch_seconds.append(time.perf_counter() - epoch_started)


def _eager_step(run: Run, permutation: Tensor, b: int) -> Tensor:
    """Step B of the epoch, kernel by kernel, on this process's slice of the global batch."""
    rows = permutation[b * run.batch : (b + 1) * run.batch][run.mine]
    x, y = run.data.x_train[rows], run.data.y_train[rows]
    if run.distortions is not None:
        x = distort(x, run.distortions[rows], run.config.distortion())
    x = x.contiguous(memory_format=torch.channels_last)
    # the whole global batch's noise, so N processes add what one process would
    eps = torch.randn((run.batch, run.model_config.latent_dim), generator=run.generator, device=run.device)[run.mine]
    # per-process mean; DistributedDataParallel averages over processes: the global mean
    local = run.batch // run.processes.world
    return train_step(
        run.stepper, run.optimizer, x, y, eps, run.generator, run.bf16, run.config.loss, run.config.beta, local
    )


# ---------------------------------------------------------------------------------------------
# Evaluate and save: every eval_every epochs, and once more at the end with the final metrics


def evaluate_and_save(run: Run) -> None:
    """Process 0 evaluates on the test set and, unless the encoder died, saves the checkpoint,
    its metrics and a history row; the others wait for its verdict."""
    metrics = None
    if run.processes.main:
        run.model.eval()
        metrics = elbo_metrics(run.model, run.data.x_test, run.config.loss, run.data.test_split.labels)
    stop_if_encoder_dead(metrics, run.data.x_test, run.step, run.config, run.out, run.processes, run.device)
    if not run.processes.main:
        return
    run.save(run.clock.elapsed())
    atomic_write_json(run.out / METRICS, {**metrics, "step": run.step, "final": False})
    _write_history_row(run, run.clock.elapsed(), metrics)
    if run.progress:
        print(
            f"step {run.step}: test -ELBO {metrics['neg_elbo_nats']:.2f} nats "
            f"(recon {metrics['reconstruction_nats']:.2f}, KL {metrics['kl_nats']:.2f}), "
            f"MSE {metrics['mse_per_pixel']:.5f}",
            file=sys.stderr,
        )


def finish(run: Run) -> dict:
    """The final evaluation (with kNN-5 over the training set), checkpoint, metrics.json and
    history row; the metrics on process 0, {} on the others."""
    train_seconds = run.clock.elapsed()
    metrics = None
    reference, test_split = run.data.knn_split, run.data.test_split
    if run.processes.main:
        run.model.eval()
        metrics = test_metrics(
            run.model, reference.images, reference.labels, test_split.images, test_split.labels, run.config.loss
        )
    stop_if_encoder_dead(metrics, test_split.images, run.step, run.config, run.out, run.processes, run.device)
    if not run.processes.main:
        return {}
    metrics.update(
        {
            "step": run.step,
            "final": True,
            "train_seconds": train_seconds,
            "images_per_second": run.images_seen / max(sum(run.epoch_seconds), 1e-9),
            "device": device_name(run.device),
            "precision": "bf16" if run.bf16 else "fp32",
            "cuda_graphs": run.graphed is not None,
            "epoch_seconds": [round(s, 4) for s in run.epoch_seconds],
        }
    )
    run.save(train_seconds)
    atomic_write_json(run.out / METRICS, metrics)
    _write_history_row(run, train_seconds, metrics)
    return metrics


def _write_history_row(run: Run, seconds: float, metrics: dict) -> None:
    row = history_row(run.step, run.steps_per_epoch, seconds, run.optimizer.lr, run.losses, metrics)
    record_history(run.out, run.history, row)
    run.losses = LossWindow()


def history_row(step: int, steps_per_epoch: int, seconds: float, lr: float, losses: LossWindow, metrics: dict) -> dict:
    """One line of history.jsonl: where training was (step, epoch, seconds of training), the learning
    rate of its last step, the mean per-image training loss (nats; β-weighted as trained) over
    the steps since the previous line (None for none), and the test figures of METRICS,
    prefixed test_."""
    return {
        "step": step,
        "epoch": round(step / steps_per_epoch, 4),
        "seconds": round(seconds, 3),
        "lr": lr,
        "train_loss_nats": losses.mean,
        "train_steps": losses.steps,
        **{f"test_{key}": metrics[key] for key in HISTORY_METRICS if key in metrics},
    }


# ---------------------------------------------------------------------------------------------
# The stop checks that need the model: a dead encoder, agreed across processes


def stop_if_encoder_dead(
    metrics: dict | None,
    test_images: Tensor,
    step: int,
    train_config: TrainConfig,
    out: Path,
    processes: distributed.Processes,
    device: torch.device,
) -> None:
    """Raise TrainingError, before anything is saved and on every process, when the encoder
    gives every test image the same latent (METRICS: process 0's evaluation, None on the
    others): a layer whose ReLUs are all off passes no gradient, so no later step can revive
    it, and the decoder learns to draw the mean image. Too large an early step does it."""
    dead = (
        metrics is not None
        and metrics["latent_spread"] == 0
        and len(test_images) > 1
        and not bool((test_images == test_images[0]).all())
    )  # identical images have one latent
    if distributed.any_process(dead, processes, device):
        raise TrainingError(
            f"At step {step} the encoder gave every test image the same latent (a layer's units all switched "
            f"off, which no later step can undo); stopped without saving, {kept(out)} (retrain with a "
            f"lower --lr than {train_config.lr:g} or a longer --warmup-steps than {train_config.warmup_steps}).",
            every_process=True,
        )


def resume_configs(
    out: str | Path, epochs: int | None, max_steps: int | None, device: str | None
) -> tuple[ModelConfig, TrainConfig]:
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
