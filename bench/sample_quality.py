"""Sample quality of a checkpoint's two samplers, the prior N(0, I) and the mixture fitted to
the aggregate posterior (`python -m training sampler`), measured with a small MNIST classifier
trained here:

- Fréchet distance between the classifier's penultimate features (128-d) of 10,000 samples
  and of the 10,000 test images (as FID does with Inception features; lower is better);
- class coverage: the classifier's labels of the 10,000 samples (the rarest class's share,
  ideally 10%).

    python bench/sample_quality.py checkpoints/mnist-z8 --data-dir ../shared/data/mnist

Writes bench/results/sample_quality.json and .md.
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
from training.data import load_dataset  # noqa: E402
from training.sampler import load_sampler  # noqa: E402


class Classifier(nn.Module):
    """Two convolutions, a 128-unit feature layer, ten logits: about 99% on MNIST in 2 epochs."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 128),
            nn.ReLU(),
        )
        self.head = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_classifier(images: torch.Tensor, labels: torch.Tensor, epochs: int, seed: int) -> Classifier:
    torch.manual_seed(seed)
    model = Classifier()
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
def decode(model: training.ConvVAE, z: np.ndarray) -> torch.Tensor:
    return torch.cat([model.decode(torch.from_numpy(z[i : i + 1000])) for i in range(0, len(z), 1000)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--data-dir")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=2, help="classifier training epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()

    started = time.perf_counter()
    train, test = load_dataset("mnist", args.data_dir)
    classifier = train_classifier(train.images, train.labels, args.epochs, args.seed)
    test_features, test_predicted = features_and_labels(classifier, test.images)
    accuracy = float((torch.from_numpy(test_predicted) == test.labels).float().mean())
    train_features, _ = features_and_labels(classifier, train.images[: args.samples])

    model = training.load_model(args.checkpoint)
    sampler = load_sampler(args.checkpoint, model.config.latent_dim)
    if sampler is None:
        raise SystemExit(f"{args.checkpoint} has no sampler; run `python -m training sampler {args.checkpoint}` first.")
    rng = np.random.default_rng(args.seed)
    latents = {
        "prior N(0, I)": rng.standard_normal((args.samples, model.config.latent_dim)).astype(np.float32),
        f"mixture ({len(sampler.weights)} components)": sampler.sample(rng, args.samples),
    }
    rows = {
        "training images (reference)": {
            "frechet": frechet_distance(train_features, test_features),
            "class_shares": None,
        }
    }
    for name, z in latents.items():
        feats, predicted = features_and_labels(classifier, decode(model, z))
        shares = np.bincount(predicted, minlength=10) / len(predicted)
        rows[name] = {"frechet": frechet_distance(feats, test_features), "class_shares": shares.tolist()}

    result = {
        "date": time.strftime("%Y-%m-%d"),
        "checkpoint": args.checkpoint,
        "samples": args.samples,
        "classifier_test_accuracy": accuracy,
        "rows": rows,
        "seconds": time.perf_counter() - started,
    }
    lines = [
        f"Sample quality of {args.checkpoint}, {result['date']}: {args.samples:,} samples, classifier test "
        f"accuracy {accuracy:.4f}",
        "",
        "| samples | Fréchet distance to test features | rarest class | most common class | classes ≥ 5% |",
        "|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        shares = row["class_shares"]
        if shares is None:
            lines.append(f"| {name} | {row['frechet']:.2f} | | | |")
            continue
        lines.append(
            f"| {name} | {row['frechet']:.2f} | {int(np.argmin(shares))}: {min(shares):.1%} | "
            f"{int(np.argmax(shares))}: {max(shares):.1%} | {sum(s >= 0.05 for s in shares)} of 10 |"
        )
    write_report(args.out, "sample_quality", result, lines)


if __name__ == "__main__":
    main()
