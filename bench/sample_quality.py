"""Sample quality of checkpoints' decoders on the same latents, measured in the features of a
small classifier trained here on the checkpoints' training split (MNIST, Fashion-MNIST, or an
image folder such as the emoji's categories):

- Fréchet distance between the classifier's penultimate features (128-d) of 10,000 decodes and
  of the test images (as FID does with Inception features; lower is better), for draws
  from the prior N(0, I), from the mixture fitted to the aggregate posterior (`python -m
  training sampler`), and for reconstructions of the test set (decode of the encoder's means);
- class coverage: the classifier's labels of the samples (the rarest class's share);
- the test MSE of the reconstructions.

Given a checkpoint and its sharpened sibling, every row is measured on the same latents for both.

    python bench/sample_quality.py checkpoints/mnist-z8 [checkpoints/mnist-z8-sharp] --data-dir ../shared/data/mnist
    python bench/sample_quality.py checkpoints/emoji-rgb-z8 checkpoints/emoji-rgb-z8-sharp --epochs 20

Writes bench/results/sample_quality.json and .md (or NAME.json and .md with --name).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import linalg
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import training  # noqa: E402
from bench.report import write_report  # noqa: E402
from training.evaluate import checkpoint_data  # noqa: E402
from training.sampler import MixtureSampler, load_sampler  # noqa: E402

RECONSTRUCTIONS = "reconstructions of the test set"


class Classifier(nn.Module):
    """Two convolutions, a 128-unit feature layer, a logit per class: about 99% on MNIST in 2
    epochs. Larger images are average-pooled to 7 × 7 before the feature layer (28 × 28 already is)."""

    def __init__(self, channels: int = 1, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(7),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 128),
            nn.ReLU(),
        )
        self.head = nn.Linear(128, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_classifier(images: torch.Tensor, labels: torch.Tensor, classes: int, epochs: int, seed: int) -> Classifier:
    torch.manual_seed(seed)
    model = Classifier(images.shape[1], classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        order = torch.randperm(len(images))
        for start in range(0, len(images), 128):
            rows = order[start : start + 128]
            loss = nn.functional.cross_entropy(model(images[rows]), labels[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval()


@torch.inference_mode()
def features_and_labels(classifier: Classifier, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    feats, labels = [], []
    for start in range(0, len(images), 1000):
        f = classifier.features(images[start : start + 1000])
        feats.append(f.numpy().astype(np.float64))
        labels.append(classifier.head(f).argmax(dim=1).numpy())
    return np.concatenate(feats), np.concatenate(labels)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||μa − μb||² + Tr(Σa + Σb − 2 (Σa Σb)^½) between Gaussians fitted to two feature sets."""
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    # a tiny ridge: ReLU features have dead units, which make the covariances singular
    ridge = 1e-6 * np.eye(a.shape[1])
    cov_a, cov_b = np.cov(a, rowvar=False) + ridge, np.cov(b, rowvar=False) + ridge
    root = linalg.sqrtm(cov_a @ cov_b)
    root = root.real if np.iscomplexobj(root) else root
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


@torch.inference_mode()
def decode(model: training.ConvVAE, z: torch.Tensor) -> torch.Tensor:
    return torch.cat([model.decode(z[i : i + 1000]) for i in range(0, len(z), 1000)])


def measure(
    model: training.ConvVAE,
    classifier: Classifier,
    latents: dict[str, torch.Tensor],
    test_images: torch.Tensor,
    test_features: np.ndarray,
) -> dict:
    """For each set of LATENTS, the Fréchet distance of MODEL's decodes to the test features and
    the classes the classifier gives them; with the test MSE of the "reconstructions" row."""
    rows = {}
    for name, z in latents.items():
        images = decode(model, z)
        feats, predicted = features_and_labels(classifier, images)
        shares = np.bincount(predicted, minlength=classifier.head.out_features) / len(predicted)
        rows[name] = {"frechet": frechet_distance(feats, test_features), "class_shares": shares.tolist()}
        if name == RECONSTRUCTIONS:
            rows[name]["mse_per_pixel"] = float((images - test_images).pow(2).mean())
    return rows


def latent_sets(
    model: training.ConvVAE, sampler: MixtureSampler, test_images: torch.Tensor, samples: int, rng: np.random.Generator
) -> dict[str, torch.Tensor]:
    """SAMPLES latents (samples, latent_dim) from the prior and from the fitted mixture, and the
    test images' encoder means, by name: the same for every decoder compared."""
    with torch.inference_mode():
        test_means, _ = training.encode_dataset(model, test_images)
    prior = rng.standard_normal((samples, model.config.latent_dim)).astype(np.float32)
    return {
        "prior N(0, I)": torch.from_numpy(prior),
        f"mixture ({len(sampler.weights)} components)": torch.from_numpy(sampler.sample(rng, samples)),
        RECONSTRUCTIONS: test_means,
    }


def report_lines(result: dict, latent_names: list[str], classes: int) -> list[str]:
    """The markdown report of RESULT (main's record): a row per set of latents, two columns per
    decoder, and the reconstructions' test MSE."""
    paths, decoders = result["checkpoints"], result["decoders"]
    names = [Path(path).name for path in paths]
    lines = [
        f"Sample quality on {result['dataset']}, {result['date']}: {result['samples']:,} samples, the same latents "
        f"for {' and '.join(names)}; classifier test accuracy {result['classifier_test_accuracy']:.4f}; training "
        f"images against the test images: {result['training_images_frechet']:.2f}",
        "",
        "| latents | " + " | ".join(f"{n}: Fréchet distance | {n}: classes ≥ 5% (rarest)" for n in names) + " |",
        "|---|" + "---|---|" * len(names),
    ]
    for name in latent_names:
        cells = []
        for path in paths:
            row = decoders[path][name]
            shares = row["class_shares"]
            cells += [f"{row['frechet']:.2f}", f"{sum(s >= 0.05 for s in shares)} of {classes} ({min(shares):.1%})"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    mses = ", ".join(f"{n} {decoders[p][RECONSTRUCTIONS]['mse_per_pixel']:.5f}" for n, p in zip(names, paths))
    return lines + ["", f"Test MSE of the reconstructions: {mses}."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", help="a checkpoint, and its sharpened sibling to compare")
    parser.add_argument("--data-dir")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=2, help="classifier training epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="sample_quality", help="the results' file name")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()

    started = time.perf_counter()
    models = [training.load_model(path) for path in args.checkpoints]
    record = models[0].checkpoint_config["dataset"]
    dataset = record["name"] if record["name"] != "folder" else Path(record.get("path", "folder")).name
    if any(m.config.num_classes for m in models):
        raise SystemExit("sample_quality measures unconditional models.")
    train, test = checkpoint_data(models[0], args.data_dir)
    classes = len(record.get("class_names", [])) or int(train.labels.max()) + 1
    classifier = train_classifier(train.images, train.labels, classes, args.epochs, args.seed)
    test_features, test_predicted = features_and_labels(classifier, test.images)
    accuracy = float((torch.from_numpy(test_predicted) == test.labels).float().mean())
    train_features, _ = features_and_labels(classifier, train.images[: args.samples])

    sampler = load_sampler(args.checkpoints[0], models[0].config.latent_dim)
    if sampler is None:
        raise SystemExit(f"{args.checkpoints[0]} has no sampler; run `python -m training sampler` on it first.")
    latents = latent_sets(models[0], sampler, test.images, args.samples, np.random.default_rng(args.seed))
    reference = {"frechet": frechet_distance(train_features, test_features)}
    decoders = {
        path: measure(model, classifier, latents, test.images, test_features)
        for path, model in zip(args.checkpoints, models)
    }

    result = {
        "date": time.strftime("%Y-%m-%d"),
        "dataset": dataset,
        "checkpoints": args.checkpoints,
        "samples": args.samples,
        "classifier_test_accuracy": accuracy,
        "training_images_frechet": reference["frechet"],
        "decoders": decoders,
        "seconds": time.perf_counter() - started,
    }
    lines = report_lines(result, list(latents), classes)
    write_report(args.out, args.name, result, lines)


if __name__ == "__main__":
    main()
