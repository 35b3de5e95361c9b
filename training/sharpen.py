"""Sharpen a trained VAE's decoder adversarially, with its encoder frozen.

A VAE's decoder draws the average of the images a latent leaves open, so its images are soft.
This loop trains a decoder for the frozen encoder's latents as a VAE-GAN's (Larsen et al.
2016) against a discriminator, as Stable Diffusion's sd-vae-ft-mse decoder was made: the same z
means the same thing, bit for bit, so the parent's atlas, fitted sampler and anomaly scores
stay valid and are carried over. The decoder may outgrow its parent's: by default it is a
larger residual one (training/layers.py), first distilled from the parent, then sharpened.

    python -m training sharpen checkpoints/mnist-z8 --out checkpoints/mnist-z8-sharp

Each step takes a batch of training images x with their latents z = μ(x) + s·σ(x)·ε (the frozen
encoder's μ and σ are computed once; s is noise_scale) and as many drawn latents z': half
draws from the parent's fitted mixture, half points on the segments between two such draws
(the box the sliders span between the modes). The losses are sharpening_losses' (below): a
reconstruction, an adversarial term on decodes of z and z' through differentiable augmentation
(training/augment.py), as often as the discriminator overfits, against a discriminator of
patches and of the whole image (training/discriminator.py) with
an R1 penalty; the first adversarial_start steps distil the parent instead. The checkpoint's
decoder is an exponential moving average of the trained one's weights.

At every evaluation the loop checks for the ways adversarial training fails (a non-finite
loss, reconstructions that drift from their inputs, decodes that collapse onto one mode, a
discriminator that wins outright) and stops with one sentence, the last good checkpoint kept.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from training.adam import Adam
from training.atlas import ATLAS
from training.augment import POLICIES, diff_augment
from training.checkpoint import (
    ENCODER_PREFIXES,
    METRICS,
    PARENT_DECODER,
    STATE_JSON,
    CheckpointError,
    atomic_save_tensors,
    atomic_write_json,
    encoder_sha256,
    load_model,
    read_config,
    versions,
)
from training.data import Split
from training.discriminator import Discriminator, per_image, r1_penalty
from training.evaluate import EVAL_BATCH, checkpoint_data, encode_dataset, test_metrics
from training.loop import (
    PRECISIONS,
    Clock,
    LossWindow,
    TrainingError,
    TrainingInterrupted,
    bf16_autocast,
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
from training.model import DECODERS, ConvVAE, ModelConfig
from training.sampler import SAMPLER, MixtureSampler, load_sampler

# Collapse checks, at each evaluation once the adversarial term is on: the test MSE may rise to
# this multiple of the parent's; decodes of fixed mixture draws must keep this share of the
# parent's pixel spread; a discriminator whose hinge loss stays under WINNING_LOSS for
# WINNING_EVALS evaluations has won.
DRIFT_FACTOR = 1.6
SPREAD_FLOOR = 0.5
WINNING_LOSS = 0.05
WINNING_EVALS = 3
DIVERSITY_SAMPLES = 1000
# the adaptive augmentation (adapt_augmentation): p is adjusted every ADA_INTERVAL steps, by as
# much as would take it from 0 to 1 over ADA_IMAGES real images
ADA_INTERVAL = 4
ADA_IMAGES = 100_000
# the MSE budget (follow_budget): the average's decay per step; the rate the scale follows it
# at, slow beside the lag of the weights' average (a ratio 0.05 off the budget moves the scale
# by e in 670 steps); the scale's bounds; the training images its unit is measured on
BUDGET_AVERAGE = 0.95
BUDGET_RATE = 0.03
BUDGET_LIMITS = (0.01, 4.0)
BUDGET_IMAGES = 10_000
# the scale the adversarial phase starts from: a discriminator that has yet to learn gives
# noisy gradients, which the adaptive weight would otherwise scale up to the reconstruction's
BUDGET_START = 0.2


@dataclass(frozen=True)
class SharpenConfig:
    steps: int = 4000
    batch_size: int = 64
    lr: float = 2e-4  # the decoder's, once the adversarial term is on
    distill_lr: float = 1e-3  # the decoder's as it starts distilling the parent's, decaying to 0
    disc_lr: float = 2e-4
    # weight of a discriminator-feature reconstruction term beside the pixel BCE: it pulls the
    # reconstructions away from their pixels as the discriminator's features move, so none
    feature_weight: float = 0.0
    # the reconstructions' latents: μ + noise_scale·σ·ε (1: posterior samples, as the VAE trained;
    # 0: the posterior means, where the test MSE is measured)
    noise_scale: float = 0.0
    adversarial_weight: float = 0.8  # the adaptive weight's factor
    # how far the adversarial term may raise the training reconstructions' MSE (the saved, averaged
    # decoder's), as a multiple of the MSE the distillation left: its weight is scaled up while
    # the MSE is below, down while above (a Lagrange multiplier, as GECO's, Rezende & Viola
    # 2018); 0: the weight stays fixed
    mse_budget: float = 1.08
    # the adversarial term on drawn latents against the one on reconstructions: the draws
    # answer to no input image, so they can be pushed harder without raising the test MSE
    mixture_weight: float = 1.0
    # the share of drawn latents drawn from the prior N(0, I) instead, from step prior_start on:
    # where the page's Random button and the slider box's corners lead, off the mixture the rest
    # are drawn from, and where a long adversarial phase otherwise lets the decoder drift
    prior_share: float = 0.0
    prior_start: int = 0
    adversarial_start: int = 500  # steps of distillation alone before the adversarial term
    disc_width: int = 32  # channels of each patch discriminator's first convolution
    # the share of the discriminator's verdict given to a head of a verdict per pixel on the 7 × 7
    # around it, at full resolution (training/discriminator.py): edges' profiles; 0: no such head
    local_share: float = 0.0
    # "residual": a new, larger decoder (DECODER_CHANNELS wide, () for residual_widths'); "mirror": the parent's
    decoder: str = "residual"
    decoder_channels: tuple[int, ...] = ()
    augment: tuple[str, ...] = POLICIES  # DiffAugment's, on the images the discriminator sees
    # StyleGAN2-ADA's target for E[sign D(real)]: the share of images augmented rises while
    # the discriminator is surer of the real images than this, falls while it is less sure;
    # 0: every image augmented, always (DiffAugment's way)
    augment_target: float = 0.6
    r1_gamma: float = 0.01  # the R1 penalty's γ: γ/2 · E‖∇D(x)‖² on real images
    r1_every: int = 4  # steps between R1 penalties, each weighted by this (lazy regularisation)
    ema: float = 0.995  # the checkpoint's decoder: this moving average of the trained one's weights
    seed: int = 0
    eval_every: int = 250  # steps between evaluations and checkpoints (and after the last)
    device: str = "auto"
    # the decoder's and the discriminator's steps under bf16 autocast ("auto": where the device
    # computes bf16 natively, as training.loop.bf16_autocast); the R1 penalty and the evaluations
    # stay fp32
    precision: str = "fp32"

    def __post_init__(self) -> None:
        # JSON gives lists; keep the dataclass hashable and comparable.
        object.__setattr__(self, "decoder_channels", tuple(int(c) for c in self.decoder_channels))
        object.__setattr__(self, "augment", tuple(self.augment))
        for name in ("steps", "batch_size", "disc_width", "eval_every", "r1_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("lr", "distill_lr", "disc_lr"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number, got {value}")
        for name in ("feature_weight", "adversarial_weight", "noise_scale", "mixture_weight", "r1_gamma", "mse_budget"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be 0 or a positive number, got {value}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")
        if not 0 <= self.local_share < 1:
            raise ValueError(f"local_share must be in [0, 1), got {self.local_share}")
        if not 0 <= self.prior_share <= 1:
            raise ValueError(f"prior_share must be in [0, 1], got {self.prior_share}")
        if not 0 <= self.augment_target < 1:
            raise ValueError(f"augment_target must be in [0, 1), got {self.augment_target}")
        for name in ("adversarial_start", "prior_start"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or positive, got {getattr(self, name)}")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.decoder == "mirror" and self.decoder_channels:
            raise ValueError("decoder_channels are the residual decoder's widths; the mirror decoder has its parent's")
        if any(c < 1 for c in self.decoder_channels):
            raise ValueError(f"decoder_channels must be positive widths, got {self.decoder_channels}")
        unknown = set(self.augment) - set(POLICIES)
        if unknown:
            raise ValueError(f"augment takes {', '.join(POLICIES)}, got {', '.join(sorted(unknown))}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")


# what a recipe saved before a field existed did instead: the parent's own decoder, fine-tuned
# with no augmentation, no R1 penalty, no weight averaging and a fixed adversarial weight
PREDATED = {"decoder": "mirror", "augment": (), "r1_gamma": 0.0, "ema": 0.0, "mse_budget": 0.0, "precision": "fp32"}


def recipe_from_saved(recipe: dict) -> SharpenConfig:
    """A config.json's sharpening RECIPE as a SharpenConfig: fields it predates take PREDATED's
    values, else their defaults; fields it has that this version lacks are dropped."""
    known = {f.name for f in fields(SharpenConfig)}
    values = {name: value for name, value in PREDATED.items() if name not in recipe}
    return SharpenConfig(**values, **{k: v for k, v in recipe.items() if k in known})


def saved_sharpen_config(out: str | Path) -> SharpenConfig:
    """The recipe a sharpening run in OUT was saved with, for --resume."""
    config = read_config(out)
    try:
        return SharpenConfig(**config["sharpen"]["recipe"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{Path(out) / 'config.json'} holds no valid sharpening recipe ({e}).") from e


def residual_widths(parent: ModelConfig) -> tuple[int, ...]:
    """The residual decoder's default widths for PARENT's images: a side per encoder convolution
    and the image's, 128 channels at the smallest, halving with each doubling of the side (at
    least 8)."""
    return tuple(max(8, 128 >> i) for i in range(len(parent.conv_channels) + 1))


def sharpened_model_config(parent: ModelConfig, config: SharpenConfig) -> ModelConfig:
    """The sharpened checkpoint's ModelConfig: the parent's encoder, CONFIG's decoder."""
    if config.decoder == "mirror":
        return replace(parent, decoder="mirror", decoder_channels=())
    return replace(parent, decoder="residual", decoder_channels=config.decoder_channels or residual_widths(parent))


def sample_mixture(sampler: MixtureSampler, n: int, generator: torch.Generator) -> Tensor:
    """(N, D) float32 draws from SAMPLER with torch's GENERATOR (on the CPU), so a resumed run
    draws what it would have drawn."""
    weights = torch.as_tensor(sampler.weights, dtype=torch.float64)
    components = torch.multinomial(weights, n, replacement=True, generator=generator)
    noise = torch.randn(n, sampler.means.shape[1], generator=generator, dtype=torch.float64)
    means, cholesky = torch.as_tensor(sampler.means), torch.as_tensor(sampler.cholesky)
    return (means[components] + torch.einsum("nij,nj->ni", cholesky[components], noise)).float()


def drawn_latents(sampler: MixtureSampler, n: int, generator: torch.Generator, prior_share: float = 0.0) -> Tensor:
    """(N, D): round(PRIOR_SHARE·N) draws from the prior N(0, I) last; of the others, the first
    half draws from SAMPLER, the rest points uniformly placed on the segments between two
    further draws. (With no prior share the generator draws exactly what it always has.)"""
    prior = round(prior_share * n)
    rest = n - prior
    half = rest // 2
    ends = sample_mixture(sampler, 2 * (rest - half), generator)
    t = torch.rand(rest - half, 1, generator=generator)
    between = ends[: rest - half] + t * (ends[rest - half :] - ends[: rest - half])
    parts = [sample_mixture(sampler, half, generator), between]
    if prior:
        parts.append(torch.randn(prior, sampler.means.shape[1], generator=generator))
    return torch.cat(parts)


@dataclass
class Augmentation:
    """The adaptive augmentation's state: the share of images augmented, and the signs of the
    discriminator's verdicts on real images since it last moved."""

    p: float = 0.0
    signs: LossWindow = field(default_factory=LossWindow)


@dataclass
class Budget:
    """The MSE budget's state: the adversarial weight's scale, and the moving average of the
    training batches' MSE as a multiple of the distilled decoder's (the baseline's train_mse)."""

    scale: float = BUDGET_START
    ratio: float | None = None


@dataclass
class CollapseWatch:
    """What the collapse checks compare with (check_collapse)."""

    eval_z: Tensor  # (DIVERSITY_SAMPLES, D) fixed mixture draws, whose decodes must stay diverse
    eval_y: Tensor  # (DIVERSITY_SAMPLES,) their classes, for a conditional model
    parent_mse: float  # the parent's test MSE
    parent_spread: float  # the spread of the parent's decodes of eval_z
    # the parent's figures, or the distilled decoder's where they are worse, measured as the
    # adversarial phase begins (None before): what it may worsen only so far
    baseline: dict[str, float] | None = None
    winning_evals: int = 0  # evaluations in a row the discriminator has won outright


@dataclass
class Sharpening:
    """What the loop's phases share. The data and the frozen encoder's posteriors are on DEVICE."""

    config: SharpenConfig
    parent: Path
    out: Path
    progress: bool
    device: torch.device
    bf16: bool  # the steps run under bf16 autocast (config.precision on this device)
    model: ConvVAE  # the parent's encoder (frozen) and the decoder being trained
    average: ConvVAE  # the same encoder, the moving average of the decoder: what is saved
    teacher: ConvVAE  # the parent, whose decodes the first steps distil
    disc: Discriminator
    g_optimizer: Adam
    d_optimizer: Adam
    generator: torch.Generator  # every draw of the loop: noise, mixture samples, augmentation
    sampler: MixtureSampler
    train_split: Split
    test_split: Split
    # on DEVICE: "x_train", "y_train", "x_test", "y_test", and the frozen encoder's "mu_train",
    # "sigma_train" and "mu_test"
    data: dict[str, Tensor]
    watch: CollapseWatch
    run_config: dict
    history: list[dict] = field(default_factory=list)
    step: int = 0
    clock: Clock = field(default_factory=Clock)  # seconds of training, a resumed run's before it too
    d_losses: LossWindow = field(default_factory=LossWindow)
    g_losses: LossWindow = field(default_factory=LossWindow)
    augmentation: Augmentation = field(default_factory=Augmentation)
    budget: Budget = field(default_factory=Budget)

    @property
    def adversarial(self) -> bool:
        """Whether the adversarial phase has begun (the distillation is over)."""
        return self.step >= self.config.adversarial_start


def sharpen(
    parent: str | Path,
    config: SharpenConfig,
    out: str | Path,
    data_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Sharpen PARENT's decoder into OUT and return the final metrics. Raises TrainingError (a
    collapse, a non-finite loss, a bad --out), TrainingInterrupted (after a resumable save),
    CheckpointError, DataError."""
    out, device = Path(out), pick_device(config.device)
    try:
        run = set_up(Path(parent), config, out, data_dir, resume, progress, device)
        with deferred_signals() as signals:
            while run.step < config.steps:
                until_eval = config.eval_every - run.step % config.eval_every
                train_steps(run, signals, min(until_eval, config.steps - run.step))
                if run.step < config.steps:
                    evaluate_and_save(run)
        return finish(run)
    except torch.OutOfMemoryError as e:
        raise out_of_memory(e, out, config.batch_size) from e


# ---------------------------------------------------------------------------------------------
# Set up: the parent and the new decoder, the posteriors, the discriminator, a resumed run's past


def check_parent(parent: Path, out: Path, resume: bool) -> tuple[ConvVAE, MixtureSampler]:
    """The parent model and its fitted sampler, once OUT is known to be a fit place to write."""
    if out.resolve() == parent.resolve():
        raise TrainingError(f"--out {out} is the checkpoint being sharpened; choose another folder.")
    teacher = load_model(parent)
    if "sharpen" in teacher.checkpoint_config:
        raise TrainingError(f"{parent} is already a sharpened decoder; sharpen its parent instead.")
    sampler = load_sampler(parent, teacher.config.latent_dim)
    if sampler is None:
        raise TrainingError(f"{parent} has no fitted mixture; run `python -m training sampler {parent}` first.")
    if not resume and (out / STATE_JSON).exists():
        raise TrainingError(f"{out} already holds a run; pass --resume to continue it or choose another --out.")
    return teacher, sampler


def student_model(teacher: ConvVAE, config: SharpenConfig) -> ConvVAE:
    """The model to train: TEACHER's encoder, frozen, and CONFIG's decoder: the parent's own
    weights for the mirror decoder, a fresh one (seeded) for the residual decoder."""
    torch.manual_seed(config.seed)
    model = ConvVAE(sharpened_model_config(teacher.config, config))
    weights = teacher.state_dict()
    if config.decoder != "mirror":
        weights = {k: v for k, v in weights.items() if k.startswith(ENCODER_PREFIXES)}
    model.load_state_dict(weights, strict=False)  # strict for the mirror; the new decoder keeps its own
    for name, p in model.named_parameters():
        p.requires_grad_(not name.startswith(ENCODER_PREFIXES))
    model.checkpoint_config = teacher.checkpoint_config
    return model


def encoded_data(teacher: ConvVAE, train: Split, test: Split, device: torch.device) -> dict[str, Tensor]:
    """Sharpening.data: the images and labels, the frozen encoder's means and standard
    deviations of the training images and its means of the test images, on DEVICE."""
    mu_train, logvar_train = encode_dataset(teacher, train.images, train.labels)
    mu_test, _ = encode_dataset(teacher, test.images, test.labels)
    tensors = {
        "x_train": train.images,
        "y_train": train.labels,
        "x_test": test.images,
        "y_test": test.labels,
        "mu_train": mu_train,
        "sigma_train": torch.exp(0.5 * logvar_train),
        "mu_test": mu_test,
    }
    return {name: tensor.to(device) for name, tensor in tensors.items()}


def sharpened_run_config(
    teacher: ConvVAE, model: ConvVAE, parent: Path, out: Path, config: SharpenConfig, fork: dict | None = None
) -> dict:
    """config.json of the sharpened checkpoint: the parent's, its own model, and how it was made
    (FORK: where a fork started, training/fork.py's record, kept as the run goes on)."""
    return {
        **{k: v for k, v in teacher.checkpoint_config.items() if k not in ("format", "model")},
        "model": model.config.to_dict(),
        "sharpen": {
            "parent": parent.name,
            # relative to this folder: found again wherever the two are moved together
            "parent_path": os.path.relpath(parent.resolve(), out.resolve()),
            "parent_model": teacher.config.to_dict(),  # the architecture of parent_decoder.safetensors
            "encoder_sha256": encoder_sha256(teacher.state_dict()),
            "recipe": asdict(config),
            "versions": versions(),
            **({"fork": fork} if fork else {}),
        },
    }


def set_up(
    parent: Path,
    config: SharpenConfig,
    out: Path,
    data_dir: str | Path | None,
    resume: bool,
    progress: bool,
    device: torch.device,
) -> Sharpening:
    teacher, sampler = check_parent(parent, out, resume)
    model = student_model(teacher, config).to(device)
    check_writable(out, needed_bytes=12 * sum(p.numel() * 4 for p in model.parameters()) + (1 << 20))
    teacher = teacher.to(device).requires_grad_(False)
    disc = Discriminator(model.config.channels, config.disc_width, model.config.num_classes, config.local_share)
    disc = disc.to(device)
    train_split, test_split = checkpoint_data(teacher, data_dir)
    data = encoded_data(teacher, train_split, test_split, device)
    run = Sharpening(
        config=config,
        parent=parent,
        out=out,
        progress=progress,
        device=device,
        bf16=bf16_autocast(config.precision, device),
        model=model,
        average=copy.deepcopy(model).requires_grad_(False),
        teacher=teacher,
        disc=disc,
        g_optimizer=Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr, betas=(0.5, 0.99)),
        d_optimizer=Adam(disc.parameters(), lr=config.disc_lr, betas=(0.5, 0.99)),
        generator=torch.Generator().manual_seed(config.seed),
        sampler=sampler,
        train_split=train_split,
        test_split=test_split,
        data=data,
        watch=collapse_watch(teacher, sampler, data),
        augmentation=Augmentation(p=augmentation_start(config)),
        run_config=sharpened_run_config(
            teacher, model, parent, out, config, read_config(out).get("sharpen", {}).get("fork") if resume else None
        ),
    )
    if resume:
        _resume_into(run)
    else:
        _copy_from_parent(parent, out, teacher)
    return run


def collapse_watch(teacher: ConvVAE, sampler: MixtureSampler, data: dict[str, Tensor]) -> CollapseWatch:
    """The collapse checks' references: fixed mixture draws, and the parent's figures on them."""
    device = data["x_test"].device
    eval_z = sample_mixture(sampler, DIVERSITY_SAMPLES, torch.Generator().manual_seed(12345)).to(device)
    eval_y = torch.arange(DIVERSITY_SAMPLES, device=device) % max(teacher.config.num_classes, 1)
    return CollapseWatch(
        eval_z=eval_z,
        eval_y=eval_y,
        parent_mse=reconstruction_mse(teacher, data["x_test"], data["mu_test"], data["y_test"]),
        parent_spread=decode_spread(teacher, eval_z, eval_y),
    )


def _copy_from_parent(parent: Path, out: Path, teacher: ConvVAE) -> None:
    """What stays valid with the encoder: the atlas and the sampler; and the parent's decoder,
    the calibrated likelihood that anomaly scores use."""
    decoder = {f"decoder.{k}": v for k, v in teacher.decoder.state_dict().items()}
    atomic_save_tensors(out / PARENT_DECODER, {k: v.detach().cpu().contiguous() for k, v in decoder.items()})
    for name in (ATLAS, SAMPLER):
        if (parent / name).is_file():
            shutil.copyfile(parent / name, out / name)


def _resume_into(run: Sharpening) -> None:
    saved = read_saved_run(run.out)

    def part(prefix: str) -> dict[str, Tensor]:
        return {k.removeprefix(prefix): v for k, v in saved.tensors.items() if k.startswith(prefix)}

    try:
        run.average.load_state_dict(saved.weights)
        run.model.load_state_dict(saved.weights)
        run.model.decoder.load_state_dict(part("trained."))
        run.disc.load_state_dict(part("disc."))
        run.g_optimizer.load_state_tensors(part("g."))
        run.d_optimizer.load_state_tensors(part("d."))
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{run.out} does not match this sharpening run ({str(e).splitlines()[0]}).") from e
    if encoder_sha256(run.model.state_dict()) != run.run_config["sharpen"]["encoder_sha256"]:
        raise CheckpointError(f"{run.out} was sharpened from another encoder than {run.parent}'s.")
    run.generator.set_state(saved.tensors["rng"])
    run.step, run.clock, run.history = saved.step, saved.clock, saved.history
    run.watch.winning_evals = int(saved.meta.get("winning_evals", 0))
    run.watch.baseline = saved.meta.get("baseline")
    run.augmentation.p = float(saved.meta.get("augment_p", 0.0))
    run.augmentation.signs.total, run.augmentation.signs.steps = saved.meta.get("augment_signs", [0.0, 0])
    run.budget.scale, run.budget.ratio = saved.meta.get("budget", [BUDGET_START, None])


def save(run: Sharpening) -> None:
    """The sharpened checkpoint (the averaged decoder), then the state --resume needs (the
    trained decoder, the discriminator and both optimizers: the page never reads them); each
    file atomically."""
    tensors = {
        **{f"trained.{k}": v.detach().contiguous() for k, v in run.model.decoder.state_dict().items()},
        **{f"disc.{k}": v.detach().contiguous() for k, v in run.disc.state_dict().items()},
        **{f"g.{k}": v for k, v in run.g_optimizer.state_tensors().items()},
        **{f"d.{k}": v for k, v in run.d_optimizer.state_tensors().items()},
        "rng": run.generator.get_state(),
    }
    meta = {
        "step": run.step,
        "elapsed_s": run.clock.elapsed(),
        "winning_evals": run.watch.winning_evals,
        "baseline": run.watch.baseline,
        "augment_p": run.augmentation.p,  # JSON keeps a float exactly: the resumed run adapts on from it
        "augment_signs": [run.augmentation.signs.total, run.augmentation.signs.steps],
        "budget": [run.budget.scale, run.budget.ratio],
    }
    save_state(run.out, run.average, run.run_config, tensors, meta)


# ---------------------------------------------------------------------------------------------
# The steps: the decoder's, then the discriminator's, on the same batch


def train_steps(run: Sharpening, signals: list[int], count: int) -> None:
    """COUNT steps, a progress bar over them; TrainingInterrupted (after saving) on a signal,
    TrainingError at a non-finite loss."""
    config, n = run.config, len(run.data["x_train"])
    steps_per_epoch = n // config.batch_size
    if steps_per_epoch == 0:
        raise TrainingError(f"--batch-size {config.batch_size} is larger than the {n} training images.")
    bar = progress_bar(range(count), f"sharpen {run.step}/{config.steps}", run.progress)
    run.model.train()
    run.disc.train()
    permutation, permutation_epoch = None, None
    for _ in bar:
        if run.step == config.adversarial_start:
            set_baseline(run)
        epoch, b = divmod(run.step, steps_per_epoch)
        if epoch != permutation_epoch:
            permutation, permutation_epoch = epoch_permutation(config.seed, epoch, n).to(run.device), epoch
        g_loss, d_loss = sharpen_step(run, permutation[b * config.batch_size : (b + 1) * config.batch_size])
        error = first_non_finite([g_loss, d_loss], run.step, run.out)
        if error is not None:
            raise TrainingError(str(error).replace("(try a lower --lr)", "(try a lower --lr or --disc-lr)"))
        run.step += 1
        run.g_losses.add([g_loss])
        run.d_losses.add([d_loss])
        bar.set_postfix(decoder=f"{g_loss:.1f}", disc=f"{d_loss:.3f}")
        if signals:
            save(run)
            bar.close()
            raise TrainingInterrupted(signals[0], run.step, run.out)
    bar.close()


@dataclass(frozen=True)
class Batch:
    """One step's images and latents, on the run's device: training images X (N, C, H, W) with
    labels Y and latents Z (N, D); drawn latents Z_DRAWN (N, D) with labels Y_DRAWN."""

    x: Tensor
    y: Tensor
    z: Tensor
    z_drawn: Tensor
    y_drawn: Tensor


def draw_batch(run: Sharpening, rows: Tensor) -> Batch:
    """The images at ROWS of the training split, their latents, and as many drawn latents."""
    classes, n, device, data = run.model.config.num_classes, len(rows), run.device, run.data
    eps = torch.randn(n, run.model.config.latent_dim, generator=run.generator).to(device)
    return Batch(
        x=data["x_train"][rows],
        y=data["y_train"][rows],
        z=data["mu_train"][rows] + run.config.noise_scale * data["sigma_train"][rows] * eps,
        z_drawn=drawn_latents(run.sampler, n, run.generator, prior_share(run.config, run.step)).to(device),
        # the two ends of a segment share their class: the same random class for the whole draw
        y_drawn=torch.randint(max(classes, 1), (n,), generator=run.generator).to(device),
    )


def prior_share(config: SharpenConfig, step: int) -> float:
    """The share of STEP's drawn latents drawn from the prior (none before config.prior_start)."""
    return config.prior_share if step >= config.prior_start else 0.0


def sharpen_step(run: Sharpening, rows: Tensor) -> tuple[float, float]:
    """One decoder step and, once the adversarial phase has begun, one discriminator step, on
    training images ROWS; their losses (the discriminator's 0 before)."""
    batch = draw_batch(run, rows)
    augment = augmenter(run)
    run.disc.requires_grad_(False)
    with autocast(run):
        g_loss, fakes = decoder_loss(run, batch, augment)
    run.g_optimizer.zero_grad()
    g_loss.backward()
    run.g_optimizer.lr = decoder_rate(run.config, run.step)
    run.g_optimizer.step()
    update_average(run)
    if not run.adversarial:
        return float(g_loss.detach()), 0.0
    run.disc.requires_grad_(True)
    with autocast(run):
        d_loss, real_sign = discriminator_loss(run.disc, batch, fakes, augment)
    adapt_augmentation(run, real_sign)
    if run.config.r1_gamma > 0 and run.step % run.config.r1_every == 0:
        # lazy regularisation (Karras et al. 2020): every r1_every steps, weighted by as many
        d_loss = d_loss + run.config.r1_every * run.config.r1_gamma / 2 * r1_penalty(
            run.disc, batch.x, batch.y, augment
        )
    run.d_optimizer.zero_grad()
    d_loss.backward()
    run.d_optimizer.step()
    return float(g_loss.detach()), float(d_loss.detach())


def autocast(run: Sharpening) -> torch.autocast:
    """bf16 autocast on the run's device where run.bf16, else a context that changes nothing."""
    return torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.bf16)


def decoder_rate(config: SharpenConfig, step: int) -> float:
    """The decoder's learning rate at STEP: distill_lr decaying to 0 along a half cosine over
    the distillation, then lr; a pure function of the step, so resuming needs no state."""
    if step >= config.adversarial_start:
        return config.lr
    return 0.5 * config.distill_lr * (1 + math.cos(math.pi * step / config.adversarial_start))


def augmenter(run: Sharpening) -> Callable[[Tensor], Tensor]:
    """The step's augmentation, a function of the images: DiffAugment with the run's generator,
    each image augmented with probability run.augmentation.p."""
    return lambda images: diff_augment(images, run.config.augment, run.generator, run.augmentation.p)


def augmentation_start(config: SharpenConfig) -> float:
    """The share of images augmented at the first step: none for the adaptive rule, which
    raises it as the discriminator needs; all for DiffAugment's (augment_target 0)."""
    return 1.0 if config.augment and not config.augment_target else 0.0


def adapt_augmentation(run: Sharpening, real_sign: float) -> None:
    """StyleGAN2-ADA's rule: every ADA_INTERVAL steps, p moves by the images seen since over
    ADA_IMAGES, up while the mean sign of the discriminator's verdicts on real images (REAL_SIGN
    this step) is above augment_target (it is learning them by heart), down while below."""
    ada = run.augmentation
    if not (run.config.augment and run.config.augment_target):
        return  # a fixed p (augmentation_start)
    ada.signs.add([real_sign])
    if ada.signs.steps < ADA_INTERVAL:
        return
    direction = math.copysign(1.0, ada.signs.mean - run.config.augment_target)
    ada.p = min(max(ada.p + direction * ada.signs.steps * run.config.batch_size / ADA_IMAGES, 0.0), 1.0)
    ada.signs = LossWindow()


# ---------------------------------------------------------------------------------------------
# The losses


def sharpening_losses(
    disc: Discriminator,
    logits: Tensor,
    drawn: Tensor,
    batch: Batch,
    augment,
    feature_weight: float,
    mixture_weight: float,
) -> tuple[Tensor, Tensor]:
    """The decoder's two losses, per image, from the pixel LOGITS (N, C, H, W) of its decodes of
    BATCH.z and its images DRAWN of BATCH.z_drawn:

        rec = BCE(dec(z), x) + feature_weight · |D_f(dec(z)) − D_f(x)|²          (nats and features)
        adv = −mean D(aug(dec(z))) − mixture_weight · mean D(aug(dec(z')))     (hinge generator loss)

    D_f: the discriminator's pooled features; aug: the same augmentation as its own step's."""
    fake = torch.sigmoid(logits)
    rec = F.binary_cross_entropy_with_logits(logits, batch.x, reduction="none").flatten(1).sum(1).mean()
    if feature_weight:
        _, fake_features = disc(fake, batch.y)
        with torch.no_grad():
            _, real_features = disc(batch.x, batch.y)
        rec = rec + feature_weight * (fake_features - real_features).pow(2).sum(1).mean()
    fake_logits, _ = disc(augment(fake), batch.y)
    drawn_logits, _ = disc(augment(drawn), batch.y_drawn)
    adv = -(per_image(disc, fake_logits).mean() + mixture_weight * per_image(disc, drawn_logits).mean())
    return rec, adv


def distillation_loss(logits: Tensor, x: Tensor, drawn_logits: Tensor, taught: Tensor) -> Tensor:
    """The first steps' loss, per image: BCE(dec(z), x) + BCE(dec(z'), parent(z')), the images
    and, for the drawn latents, the parent's decodes, whose regions between the modes the
    reconstructions alone would leave unlearned."""
    pixels = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1).mean()
    return pixels + F.binary_cross_entropy_with_logits(drawn_logits, taught, reduction="none").flatten(1).sum(1).mean()


def decoder_loss(run: Sharpening, batch: Batch, augment) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """The decoder's loss for BATCH, and its decodes (of z, of the drawn latents) for the
    discriminator's step: distillation first, then rec + w · adv with the adaptive weight
    w = adversarial_weight · ‖∇_L rec‖ / ‖∇_L adv‖ at the decoder's last layer L (Esser et al. 2021)."""
    config, model = run.config, run.model
    logits = model.decode_logits(batch.z, batch.y)
    drawn_logits = model.decode_logits(batch.z_drawn, batch.y_drawn)
    fakes = (torch.sigmoid(logits).detach(), torch.sigmoid(drawn_logits).detach())
    if not run.adversarial:
        with torch.no_grad():
            taught = run.teacher.decode(batch.z_drawn, batch.y_drawn)
        return distillation_loss(logits, batch.x, drawn_logits, taught), fakes
    rec, adv = sharpening_losses(
        run.disc, logits, torch.sigmoid(drawn_logits), batch, augment, config.feature_weight, config.mixture_weight
    )
    with torch.no_grad():  # the budget holds for the decoder that is saved: the weights' average
        follow_budget(run, float((run.average.decode(batch.z, batch.y) - batch.x).pow(2).mean()))
    weight = torch.zeros(())
    if config.adversarial_weight > 0:
        factor = config.adversarial_weight * (run.budget.scale if config.mse_budget else 1.0)
        weight = factor * adaptive_weight(rec, adv, model.last_decoder_layer.weight)
    return rec + weight * adv, fakes


def follow_budget(run: Sharpening, batch_mse: float) -> None:
    """The adversarial weight's scale after a batch whose reconstructions' MSE is BATCH_MSE:
    multiplied by exp(BUDGET_RATE · (mse_budget − r)), r the moving average (BUDGET_AVERAGE)
    of the batches' MSE over the baseline's training MSE, within BUDGET_LIMITS."""
    budget, config = run.budget, run.config
    if not config.mse_budget or run.watch.baseline is None:  # no budget, or no unit for it yet
        return
    ratio = batch_mse / run.watch.baseline["train_mse"]
    budget.ratio = ratio if budget.ratio is None else BUDGET_AVERAGE * budget.ratio + (1 - BUDGET_AVERAGE) * ratio
    scale = budget.scale * math.exp(BUDGET_RATE * (config.mse_budget - budget.ratio))
    budget.scale = min(max(scale, BUDGET_LIMITS[0]), BUDGET_LIMITS[1])


def discriminator_loss(
    disc: Discriminator, batch: Batch, fakes: tuple[Tensor, Tensor], augment: Callable[[Tensor], Tensor]
) -> tuple[Tensor, float]:
    """Hinge loss, real images against both kinds of decodes, all through the same augmentation:
    relu(1 − D(aug(x))) + ½ relu(1 + D(aug(dec(z)))) + ½ relu(1 + D(aug(dec(z')))); and the
    mean sign of its verdicts on the real images, for adapt_augmentation."""
    fake, drawn = fakes
    real_logits, _ = disc(augment(batch.x), batch.y)
    fake_logits, _ = disc(augment(fake), batch.y)
    drawn_logits, _ = disc(augment(drawn), batch.y_drawn)
    loss = hinge(disc, real_logits, 1) + 0.5 * (hinge(disc, fake_logits, -1) + hinge(disc, drawn_logits, -1))
    return loss, float(per_image(disc, real_logits.detach()).sign().mean())


def hinge(disc: Discriminator, logits: Tensor, sign: int) -> Tensor:
    """The hinge loss of LOGITS (N, L) for images that are real (SIGN 1) or decoded (−1):
    mean over images of relu(1 − sign · logit), each image's logits weighted by head."""
    return per_image(disc, F.relu(1 - sign * logits)).mean()


def adaptive_weight(rec: Tensor, adv: Tensor, last_weight: Tensor) -> Tensor:
    """‖∇ rec‖ / ‖∇ adv‖ at LAST_WEIGHT, detached: the adversarial term gets as much say over the
    decoder's output layer as the reconstruction has (taming-transformers' calculate_adaptive_weight)."""
    (rec_grad,) = torch.autograd.grad(rec, last_weight, retain_graph=True)
    (adv_grad,) = torch.autograd.grad(adv, last_weight, retain_graph=True)
    return (rec_grad.norm() / (adv_grad.norm() + 1e-4)).clamp(0.0, 1e4).detach()


@torch.no_grad()
def update_average(run: Sharpening) -> None:
    """The saved decoder's weights move towards the trained one's: a copy during distillation,
    then an exponential moving average with decay config.ema (ramped up over the first
    adversarial steps, as StyleGAN's is, so early weights fade fast)."""
    if not run.adversarial:
        decay = 0.0
    else:
        since = run.step - run.config.adversarial_start
        decay = min(run.config.ema, (1 + since) / (10 + since))
    for average, trained in zip(run.average.decoder.parameters(), run.model.decoder.parameters()):
        average.lerp_(trained, 1 - decay)


# ---------------------------------------------------------------------------------------------
# Evaluate, check for collapse, save


@torch.no_grad()
def reconstruction_mse(model: ConvVAE, x: Tensor, mu: Tensor, labels: Tensor) -> float:
    """Per-pixel MSE of decode(μ) against X (N, C, H, W), as evaluate reports it."""
    total = 0.0
    for start in range(0, len(x), EVAL_BATCH):
        part = slice(start, start + EVAL_BATCH)
        total += float((model.decode(mu[part], labels[part]) - x[part]).pow(2).sum())
    return total / x.numel()


@torch.no_grad()
def decode_spread(model: ConvVAE, z: Tensor, y: Tensor) -> float:
    """The mean over pixels of the decodes' standard deviation across Z: near 0 when every
    latent decodes to the same image (one mode)."""
    return float(model.decode(z, y).std(dim=0).mean())


@torch.no_grad()
def evaluation(run: Sharpening) -> dict:
    """The figures an evaluation records (of the averaged decoder), and the discriminator's
    verdict on a test batch."""
    run.average.eval()
    run.disc.eval()
    x_test, y_test, mu_test = run.data["x_test"], run.data["y_test"], run.data["mu_test"]
    figures = {
        "test_mse_per_pixel": reconstruction_mse(run.average, x_test, mu_test, y_test),
        "decode_spread": decode_spread(run.average, run.watch.eval_z, run.watch.eval_y),
    }
    batch = slice(0, min(EVAL_BATCH, len(x_test)))
    real_logits, _ = run.disc(x_test[batch], y_test[batch])
    fake_logits, _ = run.disc(run.average.decode(mu_test[batch], y_test[batch]), y_test[batch])
    figures["disc_loss"] = float(hinge(run.disc, real_logits, 1) + hinge(run.disc, fake_logits, -1))
    figures["disc_real_logit"] = float(per_image(run.disc, real_logits).mean())
    figures["disc_fake_logit"] = float(per_image(run.disc, fake_logits).mean())
    return figures


def set_baseline(run: Sharpening) -> None:
    """CollapseWatch.baseline, as the adversarial phase begins."""
    figures, watch = evaluation(run), run.watch
    x, mu, y = (run.data[name][:BUDGET_IMAGES] for name in ("x_train", "mu_train", "y_train"))
    watch.baseline = {
        "mse": max(watch.parent_mse, figures["test_mse_per_pixel"]),
        "spread": min(watch.parent_spread, figures["decode_spread"]),
        # the MSE budget's unit: the training reconstructions' MSE as the distillation left it
        "train_mse": reconstruction_mse(run.average, x, mu, y),
    }
    run.model.train()
    run.disc.train()


def check_collapse(run: Sharpening, figures: dict) -> None:
    """TrainingError, naming what it saw and what to lower, when the decoder has collapsed; the
    distillation's decoder is still learning, and only its numbers are checked."""
    stop = f"stopped at step {run.step} without saving, {kept(run.out)}"
    mse, spread, watch = figures["test_mse_per_pixel"], figures["decode_spread"], run.watch
    if not (math.isfinite(mse) and math.isfinite(spread)):
        raise TrainingError(f"The sharpened decoder's images became non-finite; {stop} (try a lower --lr).")
    if watch.baseline is None:
        return
    if mse > DRIFT_FACTOR * watch.baseline["mse"]:
        raise TrainingError(
            f"The sharpened decoder's test MSE rose to {mse:.4f} (from {watch.baseline['mse']:.4f}): its images "
            f"no longer follow their latents; {stop} (lower --adversarial-weight than "
            f"{run.config.adversarial_weight:g} or --lr than {run.config.lr:g})."
        )
    if spread < SPREAD_FLOOR * watch.baseline["spread"]:
        raise TrainingError(
            f"The sharpened decoder's images collapsed towards one mode (their spread across mixture samples fell to "
            f"{spread:.3f} from {watch.baseline['spread']:.3f}); {stop} (lower --adversarial-weight than "
            f"{run.config.adversarial_weight:g})."
        )
    watch.winning_evals = watch.winning_evals + 1 if figures["disc_loss"] < WINNING_LOSS else 0
    if watch.winning_evals >= WINNING_EVALS:
        raise TrainingError(
            f"The discriminator has told every real image from every decoded one for {WINNING_EVALS} evaluations "
            f"(its hinge loss {figures['disc_loss']:.3f}), so it no longer teaches the decoder; {stop} (lower "
            f"--disc-lr than {run.config.disc_lr:g} or raise --r1-gamma above {run.config.r1_gamma:g})."
        )


def evaluate_and_save(run: Sharpening) -> dict:
    figures = evaluation(run)
    check_collapse(run, figures)
    save(run)
    row = {
        "step": run.step,
        "seconds": round(run.clock.elapsed(), 3),
        "decoder_loss": run.g_losses.mean,
        "disc_train_loss": run.d_losses.mean,
        "train_steps": run.g_losses.steps,
        "augment_p": run.augmentation.p,
        "adversarial_scale": run.budget.scale,
        **figures,
    }
    record_history(run.out, run.history, row)
    atomic_write_json(
        run.out / METRICS,
        {
            "mse_per_pixel": figures["test_mse_per_pixel"],
            "step": run.step,
            "final": False,
            "parent_mse_per_pixel": run.watch.parent_mse,
        },
    )
    run.g_losses, run.d_losses = LossWindow(), LossWindow()
    if run.progress:
        print(
            f"step {run.step}: test MSE {figures['test_mse_per_pixel']:.5f} (parent {run.watch.parent_mse:.5f}), "
            f"spread {figures['decode_spread']:.3f}, discriminator loss {figures['disc_loss']:.3f}",
            file=sys.stderr,
        )
    return figures


def finish(run: Sharpening) -> dict:
    """The last evaluation and checkpoint, with the evaluate figures of the sharpened model."""
    seconds = run.clock.elapsed()
    evaluate_and_save(run)
    run.average.eval()
    loss = run.average.checkpoint_config["train"]["loss"]
    metrics = test_metrics(
        run.average, run.train_split.images, run.train_split.labels, run.test_split.images, run.test_split.labels, loss
    )
    metrics.update(
        {
            "step": run.step,
            "final": True,
            "train_seconds": seconds,
            "device": device_name(run.device),
            "precision": "bf16" if run.bf16 else "fp32",
            "parent_mse_per_pixel": run.watch.parent_mse,
        }
    )
    atomic_write_json(run.out / METRICS, metrics)
    return metrics
