"""Training speed: our loop (`python -m training train`, whole command) against a
tutorial-style loop (a DataLoader over per-sample items, batch 128, same model, same loss).

Reports images/s, seconds per epoch, test MSE after each epoch, and the time each needs to
reach a given test MSE. Writes bench/results/train_speed.json and .md.

    python bench/train_speed.py --data-dir ../shared/data/mnist [--epochs 3] [--target-mse 0.02] [--pairs 3]

This machine's speed drifts by ±15% over minutes, so the one-epoch comparison is also repeated
in alternating pairs (our whole command, then the tutorial's first epoch), PAIRS times.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training.data import load_dataset  # noqa: E402
from training.evaluate import elbo_metrics  # noqa: E402
from training.model import ConvVAE, ModelConfig, vae_loss  # noqa: E402
from training.train import pick_device  # noqa: E402
from bench.report import write_report  # noqa: E402


class PerSampleMNIST(Dataset):
    """What tutorials do (torchvision's MNIST with ToTensor, without torchvision): uint8 images
    kept as they are, each item turned into a PIL image and then into a float tensor, one at
    a time, and collated by the DataLoader."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images = (images[:, 0] * 255).round().to(torch.uint8).numpy()
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        picture = Image.fromarray(self.images[i], mode="L")
        x = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0).unsqueeze(0)  # ToTensor
        return x, int(self.labels[i])


def tutorial_loop(data_dir: str | None, epochs: int, device: torch.device) -> list[dict]:
    torch.manual_seed(0)
    train, test = load_dataset("mnist", data_dir)
    model = ConvVAE(ModelConfig()).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(PerSampleMNIST(train.images, train.labels), batch_size=128, shuffle=True)
    rows, elapsed = [], 0.0
    for epoch in range(epochs):
        model.train()
        started = time.perf_counter()
        for x, _ in loader:
            x = x.to(device)
            logits, mu, logvar = model(x)
            loss = vae_loss(logits, x, mu, logvar, "bce").total / len(x)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        epoch_seconds = time.perf_counter() - started
        elapsed += epoch_seconds
        model.eval()
        mse = elbo_metrics(model, test.images, "bce")["mse_per_pixel"]
        rows.append({"epoch": epoch + 1, "epoch_seconds": epoch_seconds, "train_seconds": elapsed,
                     "images_per_second": len(train) / epoch_seconds, "test_mse": mse})
        print(f"tutorial epoch {epoch + 1}: {epoch_seconds:.1f} s, MSE {mse:.5f}", file=sys.stderr)
    return rows


def our_loop(data_dir: str | None, epochs: int, device: str, flags: tuple[str, ...] = ()) -> list[dict]:
    """Each row is a separate whole command (start-up, data, training, evaluation, saving) of
    `python -m training train --epochs N`: the learning-rate schedule decays over the run, so
    N epochs is a different run from the first N epochs of a longer one."""
    rows = []
    for n in range(1, epochs + 1):
        with tempfile.TemporaryDirectory() as out:
            command = [sys.executable, "-m", "training", "train", "--out", out, "--epochs", str(n),
                       "--device", device, "--quiet", *flags] + (["--data-dir", data_dir] if data_dir else [])
            started = time.perf_counter()
            subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
            wall = time.perf_counter() - started
            metrics = json.loads((Path(out) / "metrics.json").read_text())
        rows.append({"epochs": n, "command_seconds": wall, "train_seconds": metrics["train_seconds"],
                     "images_per_second": metrics["images_per_second"], "test_mse": metrics["mse_per_pixel"],
                     "precision": metrics["precision"]})
        print(f"ours {' '.join(flags)} {n} epoch(s): command {wall:.1f} s, {metrics['images_per_second']:.0f} "
              f"images/s, MSE {metrics['mse_per_pixel']:.5f}", file=sys.stderr)
    return rows


def alternating_pairs(data_dir: str | None, device: torch.device, pairs: int) -> list[dict]:
    """One-epoch wall times, ours (whole command) and the tutorial's (epoch alone), run in turn."""
    rows = []
    for _ in range(pairs):
        ours = our_loop(data_dir, 1, device.type)[0]
        tutorial = tutorial_loop(data_dir, 1, device)[0]
        rows.append({"ours_command_seconds": ours["command_seconds"], "ours_test_mse": ours["test_mse"],
                     "tutorial_epoch_seconds": tutorial["epoch_seconds"], "tutorial_test_mse": tutorial["test_mse"],
                     "images_per_second_ratio": ours["images_per_second"] / tutorial["images_per_second"]})
    return rows


def first_reaching(rows: list[dict], target: float, key: str) -> float | None:
    return next((r[key] for r in rows if r["test_mse"] <= target), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--target-mse", type=float, default=0.02)
    parser.add_argument("--pairs", type=int, default=3, help="alternating one-epoch pairs (0: none)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    device = pick_device(args.device)

    ours = our_loop(args.data_dir, args.epochs, device.type)
    # the same command in fp32, to show what bf16 autocast gives (where the default picked it)
    ours_fp32 = (our_loop(args.data_dir, 1, device.type, ("--precision", "fp32"))
                 if ours[0]["precision"] == "bf16" else [])
    tutorial = tutorial_loop(args.data_dir, args.epochs, device)
    pairs = alternating_pairs(args.data_dir, device, args.pairs)
    machine = (torch.cuda.get_device_name(device) if device.type == "cuda"
               else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    result = {
        "date": time.strftime("%Y-%m-%d"), "machine": machine, "torch": torch.__version__,
        "target_mse": args.target_mse, "ours": ours, "ours_fp32": ours_fp32, "tutorial": tutorial, "pairs": pairs,
        "ours_seconds_to_target": first_reaching(ours, args.target_mse, "command_seconds"),
        "tutorial_seconds_to_target": first_reaching(tutorial, args.target_mse, "train_seconds"),
    }
    lines = [
        f"Training speed, {result['date']}, {machine}, torch {torch.__version__}",
        "",
        "| loop | epoch 1: seconds | epoch 1: images/s (training steps) | test MSE after 1 epoch | "
        f"seconds to test MSE ≤ {args.target_mse} |",
        "|---|---|---|---|---|",
        f"| ours, whole command (`python -m training train --epochs 1`, {ours[0]['precision']}) | "
        f"{ours[0]['command_seconds']:.1f} | {ours[0]['images_per_second']:.0f} | {ours[0]['test_mse']:.4f} | "
        f"{_fmt(result['ours_seconds_to_target'])} |",
        *([f"| ours, whole command, `--precision fp32` | {ours_fp32[0]['command_seconds']:.1f} | "
           f"{ours_fp32[0]['images_per_second']:.0f} | {ours_fp32[0]['test_mse']:.4f} | |"] if ours_fp32 else []),
        f"| tutorial DataLoader loop, training alone | {tutorial[0]['epoch_seconds']:.1f} | "
        f"{tutorial[0]['images_per_second']:.0f} | {tutorial[0]['test_mse']:.4f} | "
        f"{_fmt(result['tutorial_seconds_to_target'])} |",
    ]
    if pairs:
        faster = sum(p["ours_command_seconds"] < p["tutorial_epoch_seconds"] for p in pairs)
        lower = sum(p["ours_test_mse"] <= p["tutorial_test_mse"] for p in pairs)
        lines += [
            "",
            f"One epoch in {len(pairs)} alternating pairs: our whole command took "
            + ", ".join(f"{p['ours_command_seconds']:.1f}" for p in pairs) + " s, the tutorial's epoch alone "
            + ", ".join(f"{p['tutorial_epoch_seconds']:.1f}" for p in pairs) + f" s; ours was faster in {faster} of "
            f"{len(pairs)} and at an equal or lower test MSE in {lower} of {len(pairs)}; our steps ran "
            f"{statistics.median(p['images_per_second_ratio'] for p in pairs):.2f}× the tutorial's images/s (median).",
        ]
    write_report(args.out, "train_speed", result, lines)


def _fmt(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    main()
