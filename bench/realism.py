"""How real a decoder's images look: a classifier two-sample test (Lopez-Paz & Oquab 2017).

A small CNN, the critic, is trained from scratch to tell real training images from a decoder's
images; its accuracy on held-out pairs it never saw (real test images against fresh decodes, as
many of each) says how far apart the two distributions are: 0.5 when they cannot be told
apart, 1.0 when every image is told. The critic is neither the sharpening discriminator nor the
feature classifier of sample_quality.py, and it is the same, with the same training, for every
model. Each decode set is measured with several seeds (the critic's initialisation, its data
order and the latents), reported as mean ± standard deviation:

- draws from the mixture fitted to the training set's encoder means (`python -m training sampler`),
- draws from the prior N(0, I),
- reconstructions: decodes of the encoder's means (of training images to train the critic, of
  test images to test it),
- training reconstructions (only when asked, `--sets training-reconstructions`): decodes of the
  means of training images alone, the critic tested on those of training images it did not
  learn on (as many as the held-out real images, taken from its training rows): how real a
  decoder draws images it was fitted to, against the test images' reconstructions above.

With --yardsticks, the same critics also learn real images against other real images, as they
are (0.5 expected), blurred by a 3 × 3 binomial filter and half blurred: the figures to read a
model's against.

A conditional model's draws get uniformly drawn classes; its reconstructions their own.
Given several checkpoints of one data set (a VAE and its sharpened sibling), every seed uses the
same latents and the same real images for all of them.

    python bench/realism.py checkpoints/mnist-z8 checkpoints/mnist-z8-sharp --data-dir ../shared/data/mnist
    python bench/realism.py checkpoints/emoji-rgb-z8 checkpoints/emoji-rgb-z8-sharp --name realism_emoji

Writes bench/results/realism.json and .md (or NAME.json and .md with --name).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import training  # noqa: E402
from bench.report import write_report  # noqa: E402
from training.data import Split  # noqa: E402
from training.evaluate import checkpoint_data  # noqa: E402
from training.sampler import load_sampler  # noqa: E402

MIXTURE, PRIOR, RECONSTRUCTIONS = "mixture draws", "prior draws N(0, I)", "reconstructions"
TRAINING_RECONSTRUCTIONS = "reconstructions of training images"
DECODE_SETS = (MIXTURE, PRIOR, RECONSTRUCTIONS)  # measured unless --sets says otherwise
SET_NAMES = {  # --sets' words
    "mixture": MIXTURE,
    "prior": PRIOR,
    "reconstructions": RECONSTRUCTIONS,
    "training-reconstructions": TRAINING_RECONSTRUCTIONS,
}
DECODE_BATCH = 500
# Yardsticks: real images against other real images, as they are and softened, to read the
# models' figures against (--yardsticks)
AS_THEY_ARE, HALF_BLUR, BLUR = "real images", "real images, half blurred", "real images, 3 × 3 blur"
YARDSTICKS = (AS_THEY_ARE, HALF_BLUR, BLUR)
BINOMIAL = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16


class Critic(nn.Module):
    """Four convolutions (the first at full resolution, then three of stride 2), LeakyReLU, an
    adaptive average pool to 4 × 4 and a linear logit: x (N, C, H, W) in [0, 1] -> (N,) logits
    that an image is real. No normalisation layers, so a batch's make-up cannot leak."""

    def __init__(self, channels: int, width: int = 32) -> None:
        super().__init__()
        widths = (width, 2 * width, 4 * width, 4 * width)
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 3, padding=1), nn.LeakyReLU(0.2)]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.head = nn.Linear(widths[-1] * 16, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x * 2 - 1)).squeeze(1)


LR_SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class CriticRecipe:
    """How every critic is trained: Adam over EPOCHS passes of the real and decoded training
    images, in batches of BATCH (half real, half decoded), its learning rate LR falling to 0 along
    a cosine over the whole run (LR_SCHEDULE "cosine") or held (constant, the recipe of the 4-epoch
    figures in docs/). A critic at a held rate is still climbing after 4 epochs and swings between
    epochs; 12 with the cosine end where it levels off, so the verdict is where it has learned to."""

    epochs: int = 12
    batch: int = 64
    lr: float = 5e-4
    lr_schedule: str = "cosine"
    width: int = 32
    train_images: int = 6000  # real training images (and as many decodes) the critic learns from
    test_images: int = 2000  # held-out real test images (and as many decodes) it is scored on

    def __post_init__(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule is one of {', '.join(LR_SCHEDULES)}, not {self.lr_schedule!r}")
        if self.epochs < 1 or self.batch < 2 or self.lr <= 0:
            raise ValueError("a critic needs epochs >= 1, a batch of at least 2 and a positive learning rate")

    def lr_at(self, step: int, total: int) -> float:
        """The learning rate of step STEP (0-based) of TOTAL."""
        if self.lr_schedule == "constant":
            return self.lr
        return self.lr * 0.5 * (1 + math.cos(math.pi * step / total))


def critic_accuracy(
    real_train: Tensor,
    fake_train: Tensor,
    real_test: Tensor,
    fake_test: Tensor,
    recipe: CriticRecipe,
    seed: int,
    by_epoch: list[float] | None = None,
) -> float:
    """Held-out accuracy of a critic trained on REAL_TRAIN against FAKE_TRAIN (each (N, C, H, W)
    in [0, 1]), on REAL_TEST and FAKE_TEST (as many of each): 0.5 is chance. BY_EPOCH, when
    given, gets the held-out accuracy after each epoch (the last is the one returned)."""
    torch.manual_seed(seed)
    critic = Critic(real_train.shape[1], recipe.width)
    optimizer = torch.optim.Adam(critic.parameters(), lr=recipe.lr, betas=(0.5, 0.999))
    half = recipe.batch // 2
    n = min(len(real_train), len(fake_train))
    starts = range(0, n - half + 1, half)
    total, step = recipe.epochs * len(starts), 0
    targets = torch.cat([torch.ones(half), torch.zeros(half)])
    for _ in range(recipe.epochs):
        real_order, fake_order = torch.randperm(len(real_train))[:n], torch.randperm(len(fake_train))[:n]
        for start in starts:
            for group in optimizer.param_groups:
                group["lr"] = recipe.lr_at(step, total)
            x = torch.cat([real_train[real_order[start : start + half]], fake_train[fake_order[start : start + half]]])
            loss = nn.functional.binary_cross_entropy_with_logits(critic(x), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
        if by_epoch is not None:
            by_epoch.append(held_out_accuracy(critic, real_test, fake_test))
    return by_epoch[-1] if by_epoch else held_out_accuracy(critic, real_test, fake_test)


@torch.inference_mode()
def held_out_accuracy(critic: Critic, real: Tensor, fake: Tensor) -> float:
    """The share of REAL called real and FAKE called decoded by CRITIC."""
    real_right = sum(int((critic(real[i : i + 1000]) > 0).sum()) for i in range(0, len(real), 1000))
    fake_right = sum(int((critic(fake[i : i + 1000]) <= 0).sum()) for i in range(0, len(fake), 1000))
    return (real_right + fake_right) / (len(real) + len(fake))


def eight_bit(images: Tensor) -> Tensor:
    """IMAGES in [0, 1] rounded to the 256 levels real images have."""
    return images.mul(255).round().div(255)


def critic_rows(train: Split, test: Split, recipe: CriticRecipe, seed: int, share: int = 1) -> tuple[Tensor, Tensor]:
    """The rows of TRAIN and TEST that SEED's critic uses: up to SHARE × the recipe's counts of
    each, drawn from a generator seeded with SEED."""
    generator = torch.Generator().manual_seed(seed)
    train_rows = torch.randperm(len(train.images), generator=generator)[: share * recipe.train_images]
    test_rows = torch.randperm(len(test.images), generator=generator)[: share * recipe.test_images]
    return train_rows, test_rows


@torch.inference_mode()
def decode(model: training.ConvVAE, z: Tensor, y: Tensor | None) -> Tensor:
    """MODEL's images (N, C, H, W) of latents Z (N, D) and, for a conditional model, classes Y,
    as 8-bit images, the form the page shows them in and the real images have: unrounded, a
    sigmoid's background of 0.0003 instead of 0 would tell them apart without a look at a shape."""
    parts = []
    for start in range(0, len(z), DECODE_BATCH):
        labels = None if y is None else y[start : start + DECODE_BATCH]
        parts.append(model.decode(z[start : start + DECODE_BATCH], labels))
    return eight_bit(torch.cat(parts))


def held_out_training_rows(train_rows: Tensor, test_rows: Tensor) -> tuple[Tensor, Tensor]:
    """(the training rows a critic of TRAINING_RECONSTRUCTIONS learns on, the training rows whose
    reconstructions it is tested on): as many held out as TEST_ROWS, from the end of TRAIN_ROWS,
    and their real images kept out of the critic's learning too."""
    return train_rows[: -len(test_rows)], train_rows[-len(test_rows) :]


def encoded(model: training.ConvVAE, split: Split, rows: Tensor) -> tuple[Tensor, Tensor | None]:
    """The encoder means (N, D) of SPLIT's images ROWS, and their classes for a conditional model
    (None otherwise)."""
    labels = split.labels[rows] if model.config.num_classes > 0 else None
    means, _ = training.encode_dataset(model, split.images[rows], labels)
    return means, labels


@dataclass(frozen=True)
class Latents:
    """The latents (and classes, None for an unconditional model) of one decode set, for the
    critic's training side and its held-out side, and the training rows whose real images the
    critic learns on."""

    train_z: Tensor
    train_y: Tensor | None
    test_z: Tensor
    test_y: Tensor | None
    learned_rows: Tensor


def draw_latents(
    model: training.ConvVAE, kind: str, train: Split, test: Split, rows: tuple[Tensor, Tensor], seed: int
) -> Latents:
    """The latents of decode set KIND for one seed; ROWS: the training and test images used."""
    train_rows, test_rows = rows
    conditional = model.config.num_classes > 0
    if kind == RECONSTRUCTIONS:
        (train_z, train_y), (test_z, test_y) = encoded(model, train, train_rows), encoded(model, test, test_rows)
        return Latents(train_z, train_y, test_z, test_y, train_rows)
    if kind == TRAINING_RECONSTRUCTIONS:
        learned, tested = held_out_training_rows(train_rows, test_rows)
        (train_z, train_y), (test_z, test_y) = encoded(model, train, learned), encoded(model, train, tested)
        return Latents(train_z, train_y, test_z, test_y, learned)
    rng = np.random.default_rng(seed)
    counts = (len(train_rows), len(test_rows))
    if kind == MIXTURE:
        sampler = load_sampler(model.checkpoint_path, model.config.latent_dim)
        if sampler is None:
            raise SystemExit(f"{model.checkpoint_path} has no sampler; run `python -m training sampler` on it first.")
        train_z, test_z = (torch.from_numpy(sampler.sample(rng, n)) for n in counts)
    else:
        train_z, test_z = (
            torch.from_numpy(rng.standard_normal((n, model.config.latent_dim), np.float32)) for n in counts
        )
    if not conditional:
        return Latents(train_z, None, test_z, None, train_rows)
    train_y, test_y = (torch.from_numpy(rng.integers(model.config.num_classes, size=n)) for n in counts)
    return Latents(train_z, train_y, test_z, test_y, train_rows)


def measure(
    models: list[training.ConvVAE],
    train: Split,
    test: Split,
    recipe: CriticRecipe,
    seeds: list[int],
    kinds: tuple[str, ...] = DECODE_SETS,
    traces: dict | None = None,
) -> dict[str, dict[str, list[float]]]:
    """{checkpoint: {decode set: [accuracy per seed]}} for the decode sets KINDS, every model on
    the same latents and real images for each seed; the latents are the first model's (they
    share an encoder). TRACES, when given, gets {checkpoint: {decode set: [[accuracy after
    each epoch] per seed]}}."""
    results = {m.checkpoint_path: {kind: [] for kind in kinds} for m in models}
    for seed in seeds:
        train_rows, test_rows = critic_rows(train, test, recipe, seed)
        real_test = test.images[test_rows]
        for kind in kinds:
            latents = draw_latents(models[0], kind, train, test, (train_rows, test_rows), seed)
            real_train = train.images[latents.learned_rows]
            for model in models:
                fake_train = decode(model, latents.train_z, latents.train_y)
                fake_test = decode(model, latents.test_z, latents.test_y)
                by_epoch = None
                if traces is not None:
                    by_epoch = traces.setdefault(model.checkpoint_path, {}).setdefault(kind, [])
                    by_epoch.append([])
                    by_epoch = by_epoch[-1]
                accuracy = critic_accuracy(real_train, fake_train, real_test, fake_test, recipe, seed, by_epoch)
                results[model.checkpoint_path][kind].append(accuracy)
                print(f"seed {seed}, {kind}, {Path(model.checkpoint_path).name}: {accuracy:.3f}", flush=True)
    return results


def softened(images: Tensor, kind: str) -> Tensor:
    """IMAGES (N, C, H, W) in [0, 1] as yardstick KIND shows them, as 8-bit images: unchanged, a
    3 × 3 binomial blur of each channel (BLUR), or the mean of the two (HALF_BLUR)."""
    if kind == AS_THEY_ARE:
        return images
    channels = images.shape[1]
    kernel = BINOMIAL.to(images.dtype).expand(channels, 1, 3, 3)
    blurred = nn.functional.conv2d(nn.functional.pad(images, (1, 1, 1, 1), mode="replicate"), kernel, groups=channels)
    mixed = blurred if kind == BLUR else (images + blurred) / 2
    return eight_bit(mixed)


def yardstick_accuracies(train: Split, test: Split, recipe: CriticRecipe, seeds: list[int]) -> dict[str, list[float]]:
    """{yardstick: [accuracy per seed]}: critics trained as for a model on one half of a draw of
    real training images against the other half, shown as each yardstick shows them (softened),
    and scored on halves of a draw of test images alike."""
    results: dict[str, list[float]] = {kind: [] for kind in YARDSTICKS}
    for seed in seeds:
        train_rows, test_rows = critic_rows(train, test, recipe, seed, share=2)
        train_half, test_half = len(train_rows) // 2, len(test_rows) // 2
        real_train, other_train = train.images[train_rows[:train_half]], train.images[train_rows[train_half:]]
        real_test, other_test = test.images[test_rows[:test_half]], test.images[test_rows[test_half:]]
        for kind in YARDSTICKS:
            fake_train, fake_test = softened(other_train, kind), softened(other_test, kind)
            results[kind].append(critic_accuracy(real_train, fake_train, real_test, fake_test, recipe, seed))
            print(f"seed {seed}, {kind}: {results[kind][-1]:.3f}", flush=True)
    return results


def summary(accuracies: list[float]) -> str:
    """'0.912 ± 0.008' (mean ± standard deviation over the seeds)."""
    spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    return f"{statistics.mean(accuracies):.3f} ± {spread:.3f}"


def report_lines(
    dataset: str,
    names: list[str],
    results: dict,
    recipe: CriticRecipe,
    seeds: list[int],
    yardsticks: dict[str, list[float]] | None = None,
) -> list[str]:
    lines = [
        f"Critic accuracy on {dataset}, {time.strftime('%Y-%m-%d')} (0.5: indistinguishable from real images; "
        f"mean ± sd over {len(seeds)} seeds ({seeds[0]}–{seeds[-1]}); each critic trained on up to "
        f"{recipe.train_images:,} real training images "
        f"against as many decodes for {recipe.epochs} epochs ({recipe.lr_schedule} learning rate), "
        f"tested on up to {recipe.test_images:,} real test "
        "images against as many fresh decodes)",
        "",
        "| decodes of | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for kind in next(iter(results.values())):
        lines.append(f"| {kind} | " + " | ".join(summary(results[path][kind]) for path in results) + " |")
    if yardsticks:
        lines += [
            "",
            "Yardsticks: critics trained and scored alike on real images against other real images (a disjoint "
            "draw, at most half of each split), as they are and softened:",
            "",
        ]
        lines += ["| against | critic accuracy |", "|---|---|"]
        lines += [f"| {kind} | {summary(accuracies)} |" for kind, accuracies in yardsticks.items()]
    return lines


def trace_lines(traces: dict, epochs: int) -> list[str]:
    """The mean over seeds of the held-out accuracy after epochs 1, 2, 4, 8, … (and the last), a
    row per checkpoint and decode set."""
    shown = sorted({e for e in (1, 2, 4, 8, 12, 16, 24, 32) if e <= epochs} | {epochs})
    lines = [
        "",
        "The same critics' held-out accuracy after each number of epochs, mean over the seeds:",
        "",
        "| checkpoint | decodes of | " + " | ".join(f"{e} ep." for e in shown) + " |",
        "|---|---|" + "---|" * len(shown),
    ]
    for path, kinds in traces.items():
        for kind, per_seed in kinds.items():
            means = [statistics.mean(trace[e - 1] for trace in per_seed) for e in shown]
            lines.append(f"| {Path(path).name} | {kind} | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    return lines


def load_checkpoints(paths: list[str]) -> list[training.ConvVAE]:
    """The models at PATHS, each knowing its path (checkpoint_path)."""
    models = []
    for path in paths:
        model = training.load_model(path)
        model.checkpoint_path = path
        models.append(model)
    return models


def dataset_name(model: training.ConvVAE) -> str:
    """'mnist', 'fashion-mnist', or an image folder's name: what MODEL was trained on."""
    record = model.checkpoint_config["dataset"]
    return record["name"] if record["name"] != "folder" else Path(record.get("path", "folder")).name


def run_record(dataset: str, recipe: CriticRecipe, seeds: list[int]) -> dict:
    """What every results file records first: the date, the data set, the critics' recipe and seeds."""
    return {"date": time.strftime("%Y-%m-%d"), "dataset": dataset, "recipe": recipe.__dict__, "seeds": seeds}


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """The critics' recipe as flags, for every script that trains critics."""
    parser.add_argument("--epochs", type=int, default=CriticRecipe.epochs, help="critic training epochs")
    parser.add_argument(
        "--lr-schedule", choices=LR_SCHEDULES, default=CriticRecipe.lr_schedule, help="the critics' learning rate"
    )
    parser.add_argument("--train-images", type=int, default=CriticRecipe.train_images)
    parser.add_argument("--test-images", type=int, default=CriticRecipe.test_images)


def recipe_from(parser: argparse.ArgumentParser, args: argparse.Namespace) -> CriticRecipe:
    """The recipe ARGS' flags (add_recipe_arguments) give, or PARSER's one-sentence refusal."""
    try:
        return CriticRecipe(
            epochs=args.epochs,
            lr_schedule=args.lr_schedule,
            train_images=args.train_images,
            test_images=args.test_images,
        )
    except ValueError as error:
        parser.error(str(error))


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", help="checkpoints of one data set sharing an encoder")
    parser.add_argument("--data-dir")
    parser.add_argument("--seeds", type=int, default=3, help="how many critic seeds")
    parser.add_argument(
        "--first-seed", type=int, default=0, help="the first of them: fresh critics for a run chosen by others"
    )
    add_recipe_arguments(parser)
    parser.add_argument(
        "--sets",
        default=",".join(word for word, kind in SET_NAMES.items() if kind in DECODE_SETS),
        help=f"the decode sets to measure, of {', '.join(SET_NAMES)}",
    )
    parser.add_argument(
        "--yardsticks", action="store_true", help="also real images against real images, as they are and blurred"
    )
    parser.add_argument(
        "--by-epoch", action="store_true", help="also the held-out accuracy after each epoch: is the critic done?"
    )
    parser.add_argument("--name", default="realism", help="the results' file name")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    return parser


def main(argv: list[str] | None = None) -> dict:
    parser = argument_parser()
    args = parser.parse_args(argv)
    unknown = set(args.sets.split(",")) - set(SET_NAMES)
    if unknown:
        parser.error(f"--sets takes {', '.join(SET_NAMES)}, got {', '.join(sorted(unknown))}")
    kinds = tuple(SET_NAMES[word] for word in args.sets.split(","))

    recipe = recipe_from(parser, args)

    started = time.perf_counter()
    models = load_checkpoints(args.checkpoints)
    train, test = checkpoint_data(models[0], args.data_dir)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    traces = {} if args.by_epoch else None
    results = measure(models, train, test, recipe, seeds, kinds, traces)
    yardsticks = yardstick_accuracies(train, test, recipe, seeds) if args.yardsticks else None

    dataset = dataset_name(models[0])
    result = {
        **run_record(dataset, recipe, seeds),
        "accuracy": results,
        "mean": {path: {kind: statistics.mean(v) for kind, v in rows.items()} for path, rows in results.items()},
        **({"yardsticks": yardsticks} if yardsticks else {}),
        **({"by_epoch": traces} if traces else {}),
        "seconds": time.perf_counter() - started,
    }
    names = [Path(path).name for path in args.checkpoints]
    lines = report_lines(dataset, names, results, recipe, seeds, yardsticks)
    write_report(args.out, args.name, result, lines + (trace_lines(traces, recipe.epochs) if traces else []))
    return result


if __name__ == "__main__":
    main()
