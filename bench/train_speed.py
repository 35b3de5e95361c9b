"""Training speed: our loop (`python -m training train`, whole command) against a
tutorial-style loop (a DataLoader over per-sample items, batch 128, same model, same loss;
once more on PyTorch's own layers, to show that ours do not slow the baseline down).

Reports images/s, seconds per epoch, test MSE after each epoch, and the time each needs to
reach a given test MSE. Writes bench/results/train_speed.json and .md.

    python bench/train_speed.py --data-dir ../shared/data/mnist [--epochs 3] [--target-mse 0.02] [--pairs 3] \
        [--recipe "--batch-size 256 --lr 3e-3 --warmup-steps 25 --init kaiming"]

This machine's speed drifts by ±15% over minutes, so the one-epoch comparison is also repeated
in alternating pairs (our whole command, then the tutorial's first epoch), PAIRS times.

On a GPU (`--device cuda`, or auto where one is present) it compares, instead, the steady
epoch time of our loop with and without CUDA graphs at batch 128 and 512 against the
tutorial's, and with `--quality "FLAGS"` (repeatable) times whole training runs against the
MNIST's quality bar (test MSE ≤ 0.012, kNN-5 ≥ 0.96). Writes train_speed_cuda.json / .md.

    python bench/train_speed.py --device cuda --data-dir DIR \
        --quality "--recipe fast"
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import write_report  # noqa: E402
from training.data import load_dataset  # noqa: E402
from training.evaluate import elbo_metrics  # noqa: E402
from training.layers import UpConv  # noqa: E402
from training.loop import pick_device  # noqa: E402
from training.model import ConvVAE, ModelConfig, vae_loss  # noqa: E402


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


def with_stock_layers(model: ConvVAE) -> ConvVAE:
    """MODEL with each UpConv replaced by the nn.ConvTranspose2d a tutorial writes for that
    output size (output_padding 0 for an odd side), holding the same weights: the same
    function, computed by PyTorch's own layers (no crop of an even side, no weight gradient
    computed as a convolution's)."""
    for i, layer in enumerate(model.decoder):
        if isinstance(layer, UpConv):
            side = layer.out_size
            stock = nn.ConvTranspose2d(
                layer.in_channels, layer.out_channels, 3, stride=2, padding=1, output_padding=1 - side % 2
            ).to(layer.weight.device)
            stock.load_state_dict(layer.state_dict())
            model.decoder[i] = stock
    return model


def tutorial_loop(data_dir: str | None, epochs: int, device: torch.device, stock_layers: bool = False) -> list[dict]:
    """The tutorial's loop on our model; with STOCK_LAYERS, on the same model written as a
    tutorial writes it (with_stock_layers)."""
    torch.manual_seed(0)
    train, test = load_dataset("mnist", data_dir)
    model = ConvVAE(ModelConfig()).to(device)
    if stock_layers:
        model = with_stock_layers(model)
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
        rows.append(
            {
                "epoch": epoch + 1,
                "epoch_seconds": epoch_seconds,
                "train_seconds": elapsed,
                "images_per_second": len(train) / epoch_seconds,
                "test_mse": mse,
            }
        )
        print(
            f"tutorial{' (stock layers)' if stock_layers else ''} epoch {epoch + 1}: {epoch_seconds:.1f} s, "
            f"MSE {mse:.5f}",
            file=sys.stderr,
        )
    return rows


def train_command(data_dir: str | None, device: str, flags: tuple[str, ...]) -> tuple[float, dict]:
    """The wall time and metrics.json of one whole `python -m training train FLAGS` command."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "training", "train", "--out", out, "--device", device, "--quiet", *flags] + (
            ["--data-dir", data_dir] if data_dir else []
        )
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode:
            raise SystemExit(f"{shlex.join(command)} failed:\n{done.stderr[-3000:]}")
        return wall, json.loads((Path(out) / "metrics.json").read_text())


def our_loop(data_dir: str | None, epochs: int, device: str, flags: tuple[str, ...] = ()) -> list[dict]:
    """Each row is a separate whole command (start-up, data, training, evaluation, saving) of
    `python -m training train --epochs N`: the learning-rate schedule decays over the run, so
    N epochs is a different run from the first N epochs of a longer one."""
    rows = []
    for n in range(1, epochs + 1):
        wall, metrics = train_command(data_dir, device, ("--epochs", str(n), *flags))
        rows.append(
            {
                "epochs": n,
                "command_seconds": wall,
                "train_seconds": metrics["train_seconds"],
                "images_per_second": metrics["images_per_second"],
                "test_mse": metrics["mse_per_pixel"],
                "precision": metrics["precision"],
            }
        )
        print(
            f"ours {' '.join(flags)} {n} epoch(s): command {wall:.1f} s, {metrics['images_per_second']:.0f} "
            f"images/s, MSE {metrics['mse_per_pixel']:.5f}",
            file=sys.stderr,
        )
    return rows


def alternating_pairs(
    data_dir: str | None, device: torch.device, pairs: int, flags: tuple[str, ...] = ()
) -> list[dict]:
    """One-epoch wall times, ours (whole command, with FLAGS) and the tutorial's (epoch alone),
    run in turn."""
    rows = []
    for _ in range(pairs):
        ours = our_loop(data_dir, 1, device.type, flags)[0]
        tutorial = tutorial_loop(data_dir, 1, device)[0]
        rows.append(
            {
                "ours_command_seconds": ours["command_seconds"],
                "ours_test_mse": ours["test_mse"],
                "tutorial_epoch_seconds": tutorial["epoch_seconds"],
                "tutorial_test_mse": tutorial["test_mse"],
                "images_per_second_ratio": ours["images_per_second"] / tutorial["images_per_second"],
            }
        )
    return rows


GPU_VARIANTS = (  # (label, flags): batch 512 trains at twice the rate, as batch 128 at 2e-3
    ("CUDA graph, batch 512", ("--batch-size", "512", "--lr", "4e-3")),
    ("CUDA graph, batch 128", ("--batch-size", "128")),
    ("kernel by kernel (`--no-cuda-graphs`), batch 512", ("--batch-size", "512", "--lr", "4e-3", "--no-cuda-graphs")),
    ("kernel by kernel (`--no-cuda-graphs`), batch 128", ("--batch-size", "128", "--no-cuda-graphs")),
)
QUALITY = {"mse_per_pixel": 0.012, "knn5_accuracy": 0.96}  # the bundled model's targets


def gpu_variant_row(label: str, flags: tuple[str, ...], data_dir: str | None) -> dict:
    """The train command with FLAGS on the GPU: one epoch for the whole command's time and its
    test MSE, four for the steady epoch (seconds) and images/s."""
    one_wall, one = train_command(data_dir, "cuda", ("--epochs", "1", *flags))
    _, several = train_command(data_dir, "cuda", ("--epochs", "4", *flags))
    steady = statistics.median(several["epoch_seconds"][1:])  # the first includes capture and cuDNN's set-up
    print(f"{label}: epoch {steady:.3f} s, command {one_wall:.1f} s, MSE {one['mse_per_pixel']:.4f}", file=sys.stderr)
    return {
        "label": label,
        "flags": list(flags),
        "command_seconds": one_wall,
        "first_epoch_seconds": one["epoch_seconds"][0],
        "epoch_seconds": steady,
        "images_per_second": 60_000 / steady,
        "test_mse_after_one_epoch": one["mse_per_pixel"],
        "epoch_seconds_of_4": several["epoch_seconds"],
    }


def quality_row(flags: str, data_dir: str | None) -> dict:
    """A whole training run with FLAGS on the GPU: its times (s), its figures and whether they meet
    QUALITY."""
    wall, metrics = train_command(data_dir, "cuda", tuple(shlex.split(flags)))
    print(
        f"quality run {flags}: {wall:.1f} s, MSE {metrics['mse_per_pixel']:.5f}, kNN {metrics['knn5_accuracy']:.4f}",
        file=sys.stderr,
    )
    return {
        "flags": flags,
        "command_seconds": wall,
        "train_seconds": metrics["train_seconds"],
        "stepping_seconds": sum(metrics["epoch_seconds"]),
        **{k: metrics[k] for k in ("mse_per_pixel", "knn5_accuracy", "neg_elbo_nats")},
        "meets_targets": all(metrics[k] <= v if k == "mse_per_pixel" else metrics[k] >= v for k, v in QUALITY.items()),
    }


def gpu_report_lines(result: dict) -> list[str]:
    """The markdown report of RESULT (gpu_main's record): the variants against the tutorial, then
    the whole training runs."""
    tutorial, tutorial_epoch = result["tutorial"], result["tutorial_epoch_seconds"]
    lines = [
        f"Training speed on a GPU, {result['date']}, {result['machine']}, torch {result['torch']}",
        "",
        "| loop | seconds per epoch (steady) | images/s | × tutorial | first epoch | whole 1-epoch command | "
        "test MSE after 1 epoch |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| ours, {v['label']} | {v['epoch_seconds']:.3f} | {v['images_per_second']:,.0f} | "
            f"{tutorial_epoch / v['epoch_seconds']:.1f} | {v['first_epoch_seconds']:.2f} | "
            f"{v['command_seconds']:.1f} | "
            f"{v['test_mse_after_one_epoch']:.4f} |"
            for v in result["variants"]
        ],
        f"| tutorial DataLoader loop, batch 128 | {tutorial_epoch:.3f} | {60_000 / tutorial_epoch:,.0f} | 1.0 | "
        f"{tutorial[0]['epoch_seconds']:.2f} | | {tutorial[0]['test_mse']:.4f} |",
    ]
    if result["quality"]:
        lines += [
            "",
            "| training run (`python -m training train ...`) | whole command, s | training, s | "
            "steps alone, s | test MSE | kNN-5 | meets MSE ≤ 0.012 and kNN-5 ≥ 0.96 |",
            "|---|---|---|---|---|---|---|",
            *[
                f"| `{q['flags']}` | {q['command_seconds']:.1f} | {q['train_seconds']:.1f} | "
                f"{q['stepping_seconds']:.1f} | {q['mse_per_pixel']:.5f} | {q['knn5_accuracy']:.4f} | "
                f"{'yes' if q['meets_targets'] else 'no'} |"
                for q in result["quality"]
            ],
        ]
    return lines


def gpu_main(args: argparse.Namespace, device: torch.device) -> None:
    variants = [gpu_variant_row(label, flags, args.data_dir) for label, flags in GPU_VARIANTS]
    tutorial = tutorial_loop(args.data_dir, 3, device)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "variants": variants,
        "tutorial": tutorial,
        "tutorial_epoch_seconds": statistics.median(r["epoch_seconds"] for r in tutorial[1:]),
        "quality_targets": QUALITY,
        "quality": [quality_row(flags, args.data_dir) for flags in args.quality],
    }
    write_report(args.out, "train_speed_cuda", result, gpu_report_lines(result))


def first_reaching(rows: list[dict], target: float, key: str) -> float | None:
    return next((r[key] for r in rows if r["test_mse"] <= target), None)


def cpu_report_lines(result: dict) -> list[str]:
    """The markdown report of RESULT (main's record on a CPU): a row per loop, then the pairs."""
    ours, ours_fp32, ours_recipe = result["ours"], result["ours_fp32"], result["ours_recipe"]
    tutorial, tutorial_stock = result["tutorial"], result["tutorial_stock_layers"]
    lines = [
        f"Training speed, {result['date']}, {result['machine']}, torch {result['torch']}",
        "",
        "| loop | epoch 1: seconds | epoch 1: images/s (training steps) | test MSE after 1 epoch | "
        f"seconds to test MSE ≤ {result['target_mse']} |",
        "|---|---|---|---|---|",
        f"| ours, whole command (`python -m training train --epochs 1`, {ours[0]['precision']}) | "
        f"{ours[0]['command_seconds']:.1f} | {ours[0]['images_per_second']:.0f} | {ours[0]['test_mse']:.4f} | "
        f"{_fmt(result['ours_seconds_to_target'])} |",
    ]
    if ours_fp32:
        lines.append(
            f"| ours, whole command, `--precision fp32` | {ours_fp32[0]['command_seconds']:.1f} | "
            f"{ours_fp32[0]['images_per_second']:.0f} | {ours_fp32[0]['test_mse']:.4f} | |"
        )
    if ours_recipe:
        lines.append(
            f"| ours, whole command, `{result['recipe']}` ({ours_recipe[0]['precision']}) | "
            f"{ours_recipe[0]['command_seconds']:.1f} | {ours_recipe[0]['images_per_second']:.0f} | "
            f"{ours_recipe[0]['test_mse']:.4f} | {_fmt(result['ours_recipe_seconds_to_target'])} |"
        )
    lines += [
        f"| tutorial DataLoader loop, training alone | {tutorial[0]['epoch_seconds']:.1f} | "
        f"{tutorial[0]['images_per_second']:.0f} | {tutorial[0]['test_mse']:.4f} | "
        f"{_fmt(result['tutorial_seconds_to_target'])} |",
        f"| the same tutorial loop on PyTorch's own layers (`nn.ConvTranspose2d` with output_padding) | "
        f"{tutorial_stock[0]['epoch_seconds']:.1f} | {tutorial_stock[0]['images_per_second']:.0f} | "
        f"{tutorial_stock[0]['test_mse']:.4f} | |",
    ]
    if result["pairs"]:
        lines += ["", pairs_sentence(result["pairs"], result["recipe"])]
    return lines


def pairs_sentence(pairs: list[dict], recipe: str) -> str:
    """One sentence on the alternating one-epoch PAIRS: times, wins and the images/s ratio."""
    faster = sum(p["ours_command_seconds"] < p["tutorial_epoch_seconds"] for p in pairs)
    lower = sum(p["ours_test_mse"] <= p["tutorial_test_mse"] for p in pairs)
    return (
        f"One epoch in {len(pairs)} alternating pairs: our whole command"
        + (f" (`{recipe}`)" if recipe else "")
        + " took "
        + ", ".join(f"{p['ours_command_seconds']:.1f}" for p in pairs)
        + " s, the tutorial's epoch alone "
        + ", ".join(f"{p['tutorial_epoch_seconds']:.1f}" for p in pairs)
        + f" s; ours was faster in {faster} of "
        f"{len(pairs)} and at an equal or lower test MSE in {lower} of {len(pairs)}; our steps ran "
        f"{statistics.median(p['images_per_second_ratio'] for p in pairs):.2f}× the tutorial's images/s (median)."
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--target-mse", type=float, default=0.02)
    parser.add_argument("--pairs", type=int, default=3, help="alternating one-epoch pairs (0: none)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--quality",
        action="append",
        default=[],
        help="on a GPU (ignored on a CPU): time a whole training run with these flags against the quality targets",
    )
    parser.add_argument(
        "--recipe",
        default="",
        help="on a CPU: our command's flags for a second row and for the alternating pairs "
        '(e.g. "--batch-size 256 --lr 3e-3 --warmup-steps 25 --init kaiming")',
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = pick_device(args.device)
    if device.type == "cuda":
        gpu_main(args, device)
        return

    ours = our_loop(args.data_dir, args.epochs, device.type)
    # the same command in fp32, to show what bf16 autocast gives (where the default picked it)
    ours_fp32 = (
        our_loop(args.data_dir, 1, device.type, ("--precision", "fp32")) if ours[0]["precision"] == "bf16" else []
    )
    recipe = tuple(shlex.split(args.recipe))
    ours_recipe = our_loop(args.data_dir, args.epochs, device.type, recipe) if recipe else []
    tutorial = tutorial_loop(args.data_dir, args.epochs, device)
    # whether our layers help or hinder the baseline: the tutorial on PyTorch's own layers
    tutorial_stock = tutorial_loop(args.data_dir, 1, device, stock_layers=True)
    pairs = alternating_pairs(args.data_dir, device, args.pairs, recipe)
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine,
        "torch": torch.__version__,
        "target_mse": args.target_mse,
        "ours": ours,
        "ours_fp32": ours_fp32,
        "recipe": args.recipe,
        "ours_recipe": ours_recipe,
        "tutorial": tutorial,
        "tutorial_stock_layers": tutorial_stock,
        "pairs": pairs,
        "ours_seconds_to_target": first_reaching(ours, args.target_mse, "command_seconds"),
        "ours_recipe_seconds_to_target": first_reaching(ours_recipe, args.target_mse, "command_seconds"),
        "tutorial_seconds_to_target": first_reaching(tutorial, args.target_mse, "train_seconds"),
    }
    write_report(args.out, "train_speed", result, cpu_report_lines(result))


def _fmt(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    main()
