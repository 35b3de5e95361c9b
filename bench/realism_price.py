"""What realism costs in pixels: the test MSE of decoders that answer only with real images.

A decoder sees only z, and on a small latent many images share one z: the image of least
squared error is their blurred mean, and any sharp answer pays for being one of them. This
bench measures the price on one encoder without training anything. Its "nearest-K" decoder
answers a latent with the mean of the K training images whose encoder means are nearest
(within the class, for a conditional model): K = 1 answers with a real training image, so a
critic cannot tell its images from real ones, and a larger K blurs, trading realism for MSE.
Each row gives the test MSE of reconstructions (the decode of each test image's mean) as a
multiple of the first checkpoint's, and the critic of bench/realism.py on them (the same recipe,
seeds and images as there; for the critic's training side, training images are answered from
the others). The checkpoints' own decoders are measured alike, so the table shows where each
sits between the blurred mean and a real image. Blau & Michaeli (2018) bound the least MSE of a
perfectly real decoder by twice the least MSE of any; nearest-1's is one such decoder's.

    python bench/realism_price.py checkpoints/emoji-rgb-z8 checkpoints/emoji-rgb-z8-sharp --name realism_price_emoji

Writes bench/results/realism_price.json and .md (or NAME.json and .md with --name).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import training  # noqa: E402
from bench.realism import (  # noqa: E402
    RECONSTRUCTIONS,
    CriticRecipe,
    add_recipe_arguments,
    critic_accuracy,
    critic_rows,
    dataset_name,
    eight_bit,
    load_checkpoints,
    measure,
    recipe_from,
    run_record,
    summary,
)
from bench.report import write_report  # noqa: E402
from training.data import Split  # noqa: E402
from training.evaluate import checkpoint_data, nearest_neighbours  # noqa: E402
from training.sharpen import reconstruction_mse  # noqa: E402

# A class's own axis, this far out: classes lie ≥ 141 apart, a class's latents within ~10 of each
# other, so a nearest neighbour is one of the query's class (and float32 distances stay exact enough)
CLASS_APART = 100.0


def retrieval_keys(model: training.ConvVAE, split: Split) -> Tensor:
    """SPLIT's encoder means (N, D), or (N, D + classes) for a conditional model with each
    image's class CLASS_APART away from the others."""
    conditional = model.config.num_classes > 0
    mu, _ = training.encode_dataset(model, split.images, split.labels if conditional else None)
    if not conditional:
        return mu
    return torch.cat([mu, CLASS_APART * torch.nn.functional.one_hot(split.labels, model.config.num_classes)], 1)


def nearest_rows(bank: Tensor, queries: Tensor, k: int, own_rows: Tensor | None = None) -> Tensor:
    """Rows (Q, K) of BANK (N, D) nearest to each of QUERIES (Q, D), nearest first; with
    OWN_ROWS (Q,), the queries' own rows in BANK, each query's own row is left out."""
    if own_rows is None:
        return nearest_neighbours(bank, queries, k)
    rows = nearest_neighbours(bank, queries, k + 1)
    # a stable sort puts the rows that are not the query's own first, in their order
    order = torch.argsort((rows == own_rows[:, None]).to(torch.int8), dim=1, stable=True)
    return rows.gather(1, order)[:, :k]


def blends(images: Tensor, rows: Tensor, k: int) -> Tensor:
    """The mean of IMAGES (N, C, H, W) at the first K of each of ROWS (Q, ≥K): (Q, C, H, W)."""
    return torch.stack([images[r[:k]].mean(0) for r in rows])


def test_mse(model: training.ConvVAE, test: Split) -> float:
    """MODEL's reconstructions' mean squared error per pixel on TEST (decodes of the means)."""
    mu, _ = training.encode_dataset(model, test.images, test.labels if model.config.num_classes else None)
    return reconstruction_mse(model, test.images, mu, test.labels)


def nearest_k_critic(
    images: tuple[Split, Split], keys: tuple[Tensor, Tensor], ks: list[int], recipe: CriticRecipe, seeds: list[int]
) -> dict[int, list[float]]:
    """{K: [critic accuracy per seed]} on the nearest-K decoder's reconstructions, each seed on
    bench/realism.py's rows of real images for it."""
    (train, test), (train_keys, test_keys) = images, keys
    results: dict[int, list[float]] = {k: [] for k in ks}
    for seed in seeds:
        train_rows, test_rows = critic_rows(train, test, recipe, seed)
        real_train, real_test = train.images[train_rows], test.images[test_rows]
        train_answers = nearest_rows(train_keys, train_keys[train_rows], max(ks), own_rows=train_rows)
        test_answers = nearest_rows(train_keys, test_keys[test_rows], max(ks))
        for k in ks:
            fake_train = eight_bit(blends(train.images, train_answers, k))
            fake_test = eight_bit(blends(train.images, test_answers, k))
            results[k].append(critic_accuracy(real_train, fake_train, real_test, fake_test, recipe, seed))
            print(f"seed {seed}, nearest-{k}: {results[k][-1]:.3f}", flush=True)
    return results


def nearest_k_mse(train: Split, test: Split, keys: tuple[Tensor, Tensor], ks: list[int]) -> dict[int, float]:
    """{K: the nearest-K decoder's mean squared error per pixel on every test image}."""
    answers = nearest_rows(keys[0], keys[1], max(ks))
    errors = {k: 0.0 for k in ks}
    for start in range(0, len(test.images), 500):
        real = test.images[start : start + 500]
        for k in ks:
            errors[k] += (blends(train.images, answers[start : start + 500], k) - real).pow(2).sum().item()
    return {k: error / test.images.numel() for k, error in errors.items()}


def seed_words(seeds: list[int]) -> str:
    """'one critic seed (0)' or 'mean ± sd over 3 critic seeds (0–2)'."""
    if len(seeds) == 1:
        return f"one critic seed ({seeds[0]})"
    return f"mean ± sd over {len(seeds)} critic seeds ({seeds[0]}–{seeds[-1]})"


def report_lines(
    dataset: str, rows: list[tuple[str, float, list[float]]], reference: float, seeds: list[int]
) -> list[str]:
    lines = [
        f"The price of realism on {dataset}, {time.strftime('%Y-%m-%d')}: test MSE of reconstructions "
        f"(× the first checkpoint's) and the critic of bench/realism.py on them (0.5: indistinguishable "
        f"from real images; {seed_words(seeds)})",
        "",
        "| decoder | test MSE | × | critic, reconstructions |",
        "|---|---|---|---|",
    ]
    cell = {name: f"{acc[0]:.3f}" if len(acc) == 1 else summary(acc) for name, _, acc in rows}
    lines += [f"| {name} | {mse:.5f} | {mse / reference:.2f} | {cell[name]} |" for name, mse, _ in rows]
    return lines


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", help="checkpoints of one data set sharing an encoder, the VAE first")
    parser.add_argument("--data-dir")
    parser.add_argument("--k", default="1", help="how many nearest training images each nearest-K decoder averages")
    parser.add_argument("--seeds", type=int, default=3, help="how many critic seeds")
    add_recipe_arguments(parser)
    parser.add_argument("--name", default="realism_price", help="the results' file name")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args(argv)
    try:
        ks = sorted({int(word) for word in args.k.split(",")})
    except ValueError:
        parser.error(f"--k takes whole numbers separated by commas, got {args.k!r}")
    if ks[0] < 1:
        parser.error(f"--k takes counts of 1 or more, got {args.k!r}")
    recipe = recipe_from(parser, args)

    started = time.perf_counter()
    models = load_checkpoints(args.checkpoints)
    train, test = checkpoint_data(models[0], args.data_dir)
    seeds = list(range(args.seeds))
    keys = (retrieval_keys(models[0], train), retrieval_keys(models[0], test))
    critics = measure(models, train, test, recipe, seeds, (RECONSTRUCTIONS,))
    nearest_critics = nearest_k_critic((train, test), keys, ks, recipe, seeds)
    nearest_mse = nearest_k_mse(train, test, keys, ks)

    rows = [
        (Path(m.checkpoint_path).name, test_mse(m, test), critics[m.checkpoint_path][RECONSTRUCTIONS]) for m in models
    ]
    rows += [
        (
            f"nearest-{k}: the mean of {k} training images" if k > 1 else "nearest-1: a training image",
            nearest_mse[k],
            nearest_critics[k],
        )
        for k in ks
    ]
    dataset = dataset_name(models[0])
    result = {
        **run_record(dataset, recipe, seeds),
        "rows": [{"decoder": name, "test_mse": mse, "critic": acc} for name, mse, acc in rows],
        "mean_critic": {name: statistics.mean(acc) for name, _, acc in rows},
        "seconds": time.perf_counter() - started,
    }
    write_report(args.out, args.name, result, report_lines(dataset, rows, rows[0][1], seeds))
    return result


if __name__ == "__main__":
    main()
