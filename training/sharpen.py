"""Sharpen a trained VAE's decoder adversarially, with its encoder frozen.

A VAE's decoder draws the average of the images a latent leaves open, so its images are soft.
This loop fine-tunes a copy of the decoder as a VAE-GAN's (Larsen et al. 2016) against a small
discriminator, and leaves the encoder as it is, as Stable Diffusion's sd-vae-ft-mse decoder
was made: the same z means the same thing, bit for bit, so the parent's atlas, fitted sampler
and anomaly scores stay valid and are carried over.

    python -m training sharpen checkpoints/mnist-z8 --out checkpoints/mnist-z8-sharp

Each step takes a batch of training images x, their latents z = μ(x) + s·σ(x)·ε (the frozen
encoder's μ and σ are computed once; s is noise_scale) and as many draws z' from the parent's
fitted mixture:

    decoder:        rec + w · adv
        rec = BCE(dec(z), x) + feature_weight · |D_f(dec(z)) − D_f(x)|²   (nats and features, per image)
        adv = −D(dec(z)) − mixture_weight · D(dec(z'))                     (hinge generator loss)
        w   = adversarial_weight · ‖∇_L rec‖ / ‖∇_L adv‖ at the decoder's last layer L
              (Esser et al. 2021), 0 for the first adversarial_start steps
    discriminator:  relu(1 − D(x)) + relu(1 + D(dec(z))) + relu(1 + D(dec(z')))   (spectral norm)

At every evaluation the loop checks for the ways adversarial training fails (a non-finite
loss, reconstructions that drift from their inputs, decodes that collapse onto one mode, a
discriminator that wins outright) and stops with one sentence, the last good checkpoint kept.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm
from tqdm import tqdm

from training.adam import Adam
from training.atlas import ATLAS
from training.checkpoint import (
    METRICS,
    PARENT_DECODER,
    STATE_JSON,
    CheckpointError,
    atomic_save_tensors,
    atomic_write_json,
    encoder_sha256,
    load_model,
    read_config,
    read_history,
    versions,
    write_history,
)
from training.data import Split
from training.evaluate import EVAL_BATCH, checkpoint_data, encode_dataset, test_metrics
from training.loop import (
    LossWindow,
    TrainingError,
    TrainingInterrupted,
    add_history_row,
    check_writable,
    deferred_signals,
    device_name,
    epoch_permutation,
    first_non_finite,
    kept,
    out_of_memory,
    pick_device,
    read_state,
    save_state,
)
from training.model import ConvVAE, conv_sizes
from training.sampler import SAMPLER, MixtureSampler, load_sampler

# Collapse checks, at each evaluation: the test MSE may rise to this multiple of the parent's;
# decodes of fixed mixture draws must keep this share of the parent's pixel spread; a
# discriminator whose hinge loss stays under WINNING_LOSS for WINNING_EVALS evaluations has won.
DRIFT_FACTOR = 1.6
SPREAD_FLOOR = 0.5
WINNING_LOSS = 0.05
WINNING_EVALS = 3
DIVERSITY_SAMPLES = 1000


@dataclass(frozen=True)
class SharpenConfig:
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-4  # the decoder's
    disc_lr: float = 2e-4
    # weight of the discriminator-feature reconstruction term beside the pixel BCE
    feature_weight: float = 1.0
    # the reconstructions' latents: μ + noise_scale·σ·ε (1: posterior samples, as the VAE trained;
    # 0: the posterior means, where the test MSE is measured)
    noise_scale: float = 1.0
    adversarial_weight: float = 0.5  # the adaptive weight's factor
    # the adversarial term on mixture draws against the one on reconstructions: the draws
    # answer to no input image, so they can be pushed harder without raising the test MSE
    mixture_weight: float = 1.0
    adversarial_start: int = 0  # steps of reconstruction alone before the adversarial term
    disc_width: int = 64  # channels of the discriminator's first convolution
    seed: int = 0
    eval_every: int = 250  # steps between evaluations and checkpoints (and after the last)
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "disc_width", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("lr", "disc_lr"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number, got {value}")
        for name in ("feature_weight", "adversarial_weight", "noise_scale", "mixture_weight"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be 0 or a positive number, got {value}")
        if self.adversarial_start < 0:
            raise ValueError(f"adversarial_start must be 0 or positive, got {self.adversarial_start}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")


def saved_sharpen_config(out: str | Path) -> SharpenConfig:
    """The recipe a sharpening run in OUT was saved with, for --resume."""
    config = read_config(out)
    try:
        return SharpenConfig(**config["sharpen"]["recipe"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{Path(out) / 'config.json'} holds no valid sharpening recipe ({e}).") from e


class Discriminator(nn.Module):
    """Three stride-2 convolutions and a linear head, each spectrally normalised (Miyato et al.
    2018): x (N, C, H, W) in [0, 1] -> (logits (N,), features (N, F) of the last convolution)."""

    def __init__(self, channels: int, image_size: int, width: int) -> None:
        super().__init__()
        widths = (channels, width, 2 * width, 2 * width)
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [spectral_norm(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers, nn.Flatten())
        side = conv_sizes(image_size, 3)[-1]
        self.head = spectral_norm(nn.Linear(widths[-1] * side * side, 1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.features(x * 2 - 1)
        return self.head(features).squeeze(1), features


def adaptive_weight(rec: Tensor, adv: Tensor, last_weight: Tensor) -> Tensor:
    """‖∇ rec‖ / ‖∇ adv‖ at LAST_WEIGHT, detached: the adversarial term gets as much say over the
    decoder's output layer as the reconstruction has (taming-transformers' calculate_adaptive_weight)."""
    (rec_grad,) = torch.autograd.grad(rec, last_weight, retain_graph=True)
    (adv_grad,) = torch.autograd.grad(adv, last_weight, retain_graph=True)
    return (rec_grad.norm() / (adv_grad.norm() + 1e-4)).clamp(0.0, 1e4).detach()


def sample_mixture(sampler: MixtureSampler, n: int, generator: torch.Generator) -> Tensor:
    """(N, D) float32 draws from SAMPLER with torch's GENERATOR (on the CPU), so a resumed run
    draws what it would have drawn."""
    weights = torch.as_tensor(sampler.weights, dtype=torch.float64)
    components = torch.multinomial(weights, n, replacement=True, generator=generator)
    noise = torch.randn(n, sampler.means.shape[1], generator=generator, dtype=torch.float64)
    means, cholesky = torch.as_tensor(sampler.means), torch.as_tensor(sampler.cholesky)
    return (means[components] + torch.einsum("nij,nj->ni", cholesky[components], noise)).float()


@dataclass
class Sharpening:
    """What the loop's phases share. The data and the frozen encoder's posteriors are on DEVICE."""

    config: SharpenConfig
    parent: Path
    out: Path
    progress: bool
    device: torch.device
    model: ConvVAE  # the parent's encoder (frozen) and the decoder being sharpened
    disc: Discriminator
    g_optimizer: Adam
    d_optimizer: Adam
    generator: torch.Generator  # every draw of the loop: noise, mixture samples
    sampler: MixtureSampler
    train_split: Split
    test_split: Split
    x_train: Tensor
    y_train: Tensor
    mu_train: Tensor
    sigma_train: Tensor
    mu_test: Tensor
    eval_z: Tensor  # (DIVERSITY_SAMPLES, D) fixed mixture draws for the collapse check
    eval_y: Tensor
    parent_mse: float
    parent_spread: float
    run_config: dict
    history: list[dict]
    step: int = 0
    elapsed_before: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    d_losses: LossWindow = field(default_factory=LossWindow)
    g_losses: LossWindow = field(default_factory=LossWindow)
    winning_evals: int = 0

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started


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
# Set up: the parent's model and posteriors, the discriminator, a resumed run's past


def set_up(
    parent: Path,
    config: SharpenConfig,
    out: Path,
    data_dir: str | Path | None,
    resume: bool,
    progress: bool,
    device: torch.device,
) -> Sharpening:
    if out.resolve() == parent.resolve():
        raise TrainingError(f"--out {out} is the checkpoint being sharpened; choose another folder.")
    model = load_model(parent, device)
    if "sharpen" in model.checkpoint_config:
        raise TrainingError(f"{parent} is already a sharpened decoder; sharpen its parent instead.")
    sampler = load_sampler(parent, model.config.latent_dim)
    if sampler is None:
        raise TrainingError(f"{parent} has no fitted mixture; run `python -m training sampler {parent}` first.")
    if not resume and (out / STATE_JSON).exists():
        raise TrainingError(f"{out} already holds a run; pass --resume to continue it or choose another --out.")
    check_writable(out, needed_bytes=8 * sum(p.numel() * 4 for p in model.parameters()) + (1 << 20))
    torch.manual_seed(config.seed)
    disc = Discriminator(model.config.channels, model.config.image_size, config.disc_width).to(device)
    for p in [*model.encoder.parameters(), *model.to_mu.parameters(), *model.to_logvar.parameters()]:
        p.requires_grad_(False)
    g_optimizer = Adam(model.decoder.parameters(), lr=config.lr, betas=(0.5, 0.9))
    d_optimizer = Adam(disc.parameters(), lr=config.disc_lr, betas=(0.5, 0.9))
    generator = torch.Generator().manual_seed(config.seed)

    train_split, test_split = checkpoint_data(model, data_dir)
    mu_train, logvar_train = encode_dataset(model, train_split.images, train_split.labels)
    mu_test, _ = encode_dataset(model, test_split.images, test_split.labels)
    eval_z = sample_mixture(sampler, DIVERSITY_SAMPLES, torch.Generator().manual_seed(12345)).to(device)
    classes = model.config.num_classes
    eval_y = torch.arange(DIVERSITY_SAMPLES, device=device) % max(classes, 1)
    x_test = test_split.images.to(device)
    parent_mse = reconstruction_mse(model, x_test, mu_test.to(device), test_split.labels.to(device))
    parent_spread = decode_spread(model, eval_z, eval_y)

    run_config = {
        **{k: v for k, v in model.checkpoint_config.items() if k != "format"},
        "sharpen": {
            "parent": parent.name,
            # relative to this folder: found again wherever the two are moved together
            "parent_path": os.path.relpath(parent.resolve(), out.resolve()),
            "encoder_sha256": encoder_sha256(model.state_dict()),
            "recipe": asdict(config),
            "versions": versions(),
        },
    }
    run = Sharpening(
        config,
        parent,
        out,
        progress,
        device,
        model,
        disc,
        g_optimizer,
        d_optimizer,
        generator,
        sampler,
        train_split,
        test_split,
        train_split.images.to(device),
        train_split.labels.to(device),
        mu_train.to(device),
        torch.exp(0.5 * logvar_train).to(device),
        mu_test.to(device),
        eval_z,
        eval_y,
        parent_mse,
        parent_spread,
        run_config,
        [],
    )
    if resume:
        _resume_into(run)
    else:
        _copy_from_parent(parent, out, model)
    return run


def _copy_from_parent(parent: Path, out: Path, model: ConvVAE) -> None:
    """What stays valid with the encoder: the atlas and the sampler; and the parent's decoder,
    the calibrated likelihood that anomaly scores use."""
    decoder = {f"decoder.{k}": v for k, v in model.decoder.state_dict().items()}
    atomic_save_tensors(out / PARENT_DECODER, {k: v.detach().cpu().contiguous() for k, v in decoder.items()})
    for name in (ATLAS, SAMPLER):
        if (parent / name).is_file():
            shutil.copyfile(parent / name, out / name)


def _resume_into(run: Sharpening) -> None:
    weights, state, meta = read_state(run.out)
    try:
        run.model.load_state_dict(weights)
        run.disc.load_state_dict({k.removeprefix("disc."): v for k, v in state.items() if k.startswith("disc.")})
        run.g_optimizer.load_state_tensors({k.removeprefix("g."): v for k, v in state.items() if k.startswith("g.")})
        run.d_optimizer.load_state_tensors({k.removeprefix("d."): v for k, v in state.items() if k.startswith("d.")})
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{run.out} does not match this sharpening run ({str(e).splitlines()[0]}).") from e
    if encoder_sha256(run.model.state_dict()) != run.run_config["sharpen"]["encoder_sha256"]:
        raise CheckpointError(f"{run.out} was sharpened from another encoder than {run.parent}'s.")
    run.generator.set_state(state["rng"])
    run.step, run.elapsed_before = int(meta["step"]), float(meta.get("elapsed_s", 0.0))
    run.winning_evals = int(meta.get("winning_evals", 0))
    run.history = [row for row in read_history(run.out) if row["step"] <= run.step]


def save(run: Sharpening) -> None:
    """The sharpened checkpoint, then the state --resume needs (the discriminator and both
    optimizers: the page never reads them); each file atomically."""
    tensors = {
        **{f"disc.{k}": v.detach().contiguous() for k, v in run.disc.state_dict().items()},
        **{f"g.{k}": v for k, v in run.g_optimizer.state_tensors().items()},
        **{f"d.{k}": v for k, v in run.d_optimizer.state_tensors().items()},
        "rng": run.generator.get_state(),
    }
    meta = {"step": run.step, "elapsed_s": run.elapsed(), "winning_evals": run.winning_evals}
    save_state(run.out, run.model, run.run_config, tensors, meta)


# ---------------------------------------------------------------------------------------------
# The steps: the decoder's, then the discriminator's, on the same batch


def train_steps(run: Sharpening, signals: list[int], count: int) -> None:
    """COUNT steps, a progress bar over them; TrainingInterrupted (after saving) on a signal,
    TrainingError at a non-finite loss."""
    config, n = run.config, len(run.x_train)
    steps_per_epoch = n // config.batch_size
    if steps_per_epoch == 0:
        raise TrainingError(f"--batch-size {config.batch_size} is larger than the {n} training images.")
    bar = tqdm(
        range(count),
        desc=f"sharpen {run.step}/{config.steps}",
        unit="step",
        disable=not run.progress,
        leave=True,
        dynamic_ncols=True,
        file=sys.stderr,
    )
    run.model.train()
    run.disc.train()
    permutation, permutation_epoch = None, None
    for _ in bar:
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


def sharpen_step(run: Sharpening, rows: Tensor) -> tuple[float, float]:
    """One decoder step and one discriminator step on training images ROWS; their losses."""
    config, model, disc = run.config, run.model, run.disc
    x, y = run.x_train[rows], run.y_train[rows]
    eps = torch.randn(len(rows), model.config.latent_dim, generator=run.generator).to(run.device)
    z = run.mu_train[rows] + config.noise_scale * run.sigma_train[rows] * eps
    z_mix = sample_mixture(run.sampler, len(rows), run.generator).to(run.device)
    y_mix = torch.randint(max(model.config.num_classes, 1), (len(rows),), generator=run.generator).to(run.device)

    # the decoder: reconstruction in pixels and in the discriminator's features, plus the adversarial term
    disc.requires_grad_(False)
    logits = model.decode_logits(z, y)
    fake, fake_mix = torch.sigmoid(logits), model.decode(z_mix, y_mix)
    fake_logits, fake_features = disc(fake)
    mix_logits, _ = disc(fake_mix)
    with torch.no_grad():
        _, real_features = disc(x)
    pixels = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1).mean()
    rec = pixels + config.feature_weight * (fake_features - real_features).pow(2).sum(1).mean()
    adv = -(fake_logits.mean() + config.mixture_weight * mix_logits.mean())
    weight = torch.zeros(())
    if run.step >= config.adversarial_start and config.adversarial_weight > 0:
        weight = config.adversarial_weight * adaptive_weight(rec, adv, model.decoder[-1].weight)
    g_loss = rec + weight * adv
    run.g_optimizer.zero_grad()
    g_loss.backward()
    run.g_optimizer.step()
    disc.requires_grad_(True)

    # the discriminator: real images against both kinds of decodes (hinge)
    real_logits, _ = disc(x)
    fake_logits, _ = disc(fake.detach())
    mix_logits, _ = disc(fake_mix.detach())
    d_loss = F.relu(1 - real_logits).mean() + 0.5 * (F.relu(1 + fake_logits).mean() + F.relu(1 + mix_logits).mean())
    run.d_optimizer.zero_grad()
    d_loss.backward()
    run.d_optimizer.step()
    return float(g_loss.detach()), float(d_loss.detach())


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
    """The figures an evaluation records, and the discriminator's verdict on a test batch."""
    run.model.eval()
    run.disc.eval()
    x_test, y_test = run.test_split.images.to(run.device), run.test_split.labels.to(run.device)
    figures = {
        "test_mse_per_pixel": reconstruction_mse(run.model, x_test, run.mu_test, y_test),
        "decode_spread": decode_spread(run.model, run.eval_z, run.eval_y),
    }
    batch = slice(0, min(EVAL_BATCH, len(x_test)))
    real_logits, _ = run.disc(x_test[batch])
    fake_logits, _ = run.disc(run.model.decode(run.mu_test[batch], y_test[batch]))
    figures["disc_loss"] = float(F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean())
    figures["disc_real_logit"], figures["disc_fake_logit"] = float(real_logits.mean()), float(fake_logits.mean())
    return figures


def check_collapse(run: Sharpening, figures: dict) -> None:
    """TrainingError, naming what it saw and what to lower, when the decoder has collapsed."""
    stop = f"stopped at step {run.step} without saving, {kept(run.out)}"
    mse, spread = figures["test_mse_per_pixel"], figures["decode_spread"]
    if not (math.isfinite(mse) and math.isfinite(spread)):
        raise TrainingError(f"The sharpened decoder's images became non-finite; {stop} (try a lower --lr).")
    if mse > DRIFT_FACTOR * run.parent_mse:
        raise TrainingError(
            f"The sharpened decoder's test MSE rose to {mse:.4f} (the parent's: {run.parent_mse:.4f}): its images "
            f"no longer follow their latents; {stop} (lower --adversarial-weight than "
            f"{run.config.adversarial_weight:g} or --lr than {run.config.lr:g})."
        )
    if spread < SPREAD_FLOOR * run.parent_spread:
        raise TrainingError(
            f"The sharpened decoder's images collapsed towards one mode (their spread across mixture samples fell to "
            f"{spread:.3f} from the parent's {run.parent_spread:.3f}); {stop} (lower --adversarial-weight than "
            f"{run.config.adversarial_weight:g})."
        )
    run.winning_evals = run.winning_evals + 1 if figures["disc_loss"] < WINNING_LOSS else 0
    if run.winning_evals >= WINNING_EVALS:
        raise TrainingError(
            f"The discriminator has told every real image from every decoded one for {WINNING_EVALS} evaluations "
            f"(its hinge loss {figures['disc_loss']:.3f}), so it no longer teaches the decoder; {stop} (lower "
            f"--disc-lr than {run.config.disc_lr:g})."
        )


def evaluate_and_save(run: Sharpening) -> dict:
    figures = evaluation(run)
    check_collapse(run, figures)
    save(run)
    row = {
        "step": run.step,
        "seconds": round(run.elapsed(), 3),
        "decoder_loss": run.g_losses.mean,
        "disc_train_loss": run.d_losses.mean,
        "train_steps": run.g_losses.steps,
        **figures,
    }
    add_history_row(run.history, row)
    write_history(run.out, run.history)
    atomic_write_json(
        run.out / METRICS,
        {
            "mse_per_pixel": figures["test_mse_per_pixel"],
            "step": run.step,
            "final": False,
            "parent_mse_per_pixel": run.parent_mse,
        },
    )
    run.g_losses, run.d_losses = LossWindow(), LossWindow()
    if run.progress:
        print(
            f"step {run.step}: test MSE {figures['test_mse_per_pixel']:.5f} (parent {run.parent_mse:.5f}), "
            f"spread {figures['decode_spread']:.3f}, discriminator loss {figures['disc_loss']:.3f}",
            file=sys.stderr,
        )
    return figures


def finish(run: Sharpening) -> dict:
    """The last evaluation and checkpoint, with the evaluate figures of the sharpened model."""
    seconds = run.elapsed()
    evaluate_and_save(run)
    run.model.eval()
    loss = run.model.checkpoint_config["train"]["loss"]
    metrics = test_metrics(
        run.model, run.train_split.images, run.train_split.labels, run.test_split.images, run.test_split.labels, loss
    )
    metrics.update(
        {
            "step": run.step,
            "final": True,
            "train_seconds": seconds,
            "device": device_name(run.device),
            "parent_mse_per_pixel": run.parent_mse,
        }
    )
    atomic_write_json(run.out / METRICS, metrics)
    return metrics
