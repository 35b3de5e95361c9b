"""Training-step variants on a GPU that bench/train_speed.py does not cover: the layout
(channels-last or NCHW), cuDNN's autotuner (`cudnn.benchmark`), `torch.compile` of the model
inside the captured step (and, to tell the two apart, the step with and without compile run
kernel by kernel, uncaptured), and fp32 against bf16 autocast. Each runs the graphed step of
`python -m training train` (training.graphed.GraphedSteps, bf16 unless said) in this process,
for a few epochs from the same seed; reported: the steady epoch time (median of epochs 2..E),
images/s, the mean training loss of each epoch and the test MSE after the last (a variant that
trains differently shows there). A variant that fails records its error and the others still
run.
Writes bench/results/gpu_variants.json and .md.

    python bench/gpu_variants.py --data-dir DIR [--epochs 4] [--batch-size 512 --batch-size 128] [--only TEXT]

bench/gpu.sh runs it on a GPU. On a CPU it only checks the wiring (the step runs
eagerly; `--steps N` shortens the epochs; torch.compile is skipped there, 20 s to compile).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import write_report  # noqa: E402
from training.adam import Adam  # noqa: E402
from training.data import load_dataset  # noqa: E402
from training.evaluate import elbo_metrics  # noqa: E402
from training.graphed import GraphedSteps  # noqa: E402
from training.loop import device_name, epoch_permutation, pick_device  # noqa: E402
from training.model import ConvVAE, ModelConfig, vae_loss  # noqa: E402
from training.train import TrainConfig, init_output_bias, learning_rates  # noqa: E402


@dataclass(frozen=True)
class Variant:
    label: str
    channels_last: bool = True
    cudnn_benchmark: bool = False
    compile: bool = False
    capture: bool = True  # False: the same step run kernel by kernel, no CUDA graph
    bf16: bool = True  # False: fp32, PyTorch's defaults (cuDNN's convolutions in TF32)


VARIANTS = (
    Variant("as trained (channels-last, graph)"),
    Variant("NCHW", channels_last=False),
    Variant("cudnn.benchmark", cudnn_benchmark=True),
    Variant("torch.compile inside the graph", compile=True),
    # to tell a fault of capturing compiled code from compile's own numerics: both uncaptured
    Variant("as trained, not captured", capture=False),
    Variant("torch.compile, not captured", compile=True, capture=False),
    # a launch-bound step: fp32 has no casts to launch (the weights' to bf16, their gradients' back)
    Variant("fp32 (`--precision fp32`)", bf16=False),
)
SEED = 0


def timed_epochs(
    graphed: GraphedSteps, epochs: int, steps_per_epoch: int, images: int, batch: int
) -> tuple[list[float], list[float]]:
    """Run EPOCHS of STEPS_PER_EPOCH steps over IMAGES training images: each epoch's seconds and
    its mean loss per image (nats)."""
    epoch_seconds, epoch_losses, step = [], [], 0
    for epoch in range(epochs):
        started = time.perf_counter()
        graphed.start_epoch(epoch_permutation(SEED, epoch, images), SEED, epoch, step)
        for _ in range(steps_per_epoch):
            graphed.step()
            step += 1
        last_losses = graphed.losses[:steps_per_epoch].tolist()  # also waits for the GPU
        epoch_seconds.append(time.perf_counter() - started)
        epoch_losses.append(sum(last_losses) / len(last_losses) / batch)
    return epoch_seconds, epoch_losses


def run_variant(
    variant: Variant,
    batch: int,
    epochs: int,
    steps: int,
    train_images: torch.Tensor,
    test_images: torch.Tensor,
    device: torch.device,
) -> dict:
    torch.manual_seed(SEED)
    torch.backends.cudnn.benchmark = variant.cudnn_benchmark
    model = ConvVAE(ModelConfig()).to(device)
    if variant.channels_last:
        model = model.to(memory_format=torch.channels_last)
    init_output_bias(model, train_images)
    # the train command's schedule (50 steps of warm-up, then WSD) at train_speed's rate for
    # the batch: a constant 4e-3 from the first step killed the batch-512 network (every ReLU
    # off, the mean image out: loss 206 nats) in some variants and not others
    config = TrainConfig(epochs=epochs, batch_size=batch, lr=2e-3 * batch / 128)
    optimizer = Adam(model.parameters(), lr=config.lr)
    steps_per_epoch = min(steps or len(train_images) // batch, len(train_images) // batch)
    schedule = learning_rates(config, epochs * steps_per_epoch, device)
    stepper = torch.compile(model) if variant.compile else model
    labels = torch.zeros(len(train_images), dtype=torch.long, device=device)
    graphed = GraphedSteps(
        stepper,
        optimizer,
        train_images,
        labels,
        batch,
        schedule,
        steps_per_epoch,
        "bce",
        1.0,
        bf16=variant.bf16,
        loss_fn=vae_loss,
        capture=variant.capture and device.type == "cuda",
    )
    epoch_seconds, epoch_losses = timed_epochs(graphed, epochs, steps_per_epoch, len(train_images), batch)
    model.eval()
    mse = elbo_metrics(model, test_images, "bce")["mse_per_pixel"]
    steady = statistics.median(epoch_seconds[1:]) if epochs > 1 else epoch_seconds[0]
    return {
        "label": variant.label,
        "batch": batch,
        "epoch_seconds": epoch_seconds,
        "steady_seconds": steady,
        "images_per_second": steps_per_epoch * batch / steady,
        "last_epoch_loss": epoch_losses[-1],
        "epoch_losses": epoch_losses,
        "test_mse": mse,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, action="append", help="repeatable (default: 512 and 128)")
    parser.add_argument("--steps", type=int, default=0, help="steps per epoch (0: whole epochs)")
    parser.add_argument(
        "--only",
        action="append",
        metavar="TEXT",
        help="run only the variants whose label holds TEXT (repeatable; default: all)",
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    if device.type != "cuda" and not args.steps:
        print("gpu_variants: no GPU here, nothing measured (--device cpu --steps 5 checks the wiring).")
        return
    train, test = load_dataset("mnist", args.data_dir)
    train_images, test_images = train.images.to(device), test.images.to(device)
    machine = device_name(device)
    rows: list[dict] = []
    for batch in args.batch_size or [512, 128]:
        for variant in VARIANTS:
            if variant.compile and device.type != "cuda":
                continue
            if args.only and not any(text in variant.label for text in args.only):
                continue
            try:
                row = run_variant(variant, batch, args.epochs, args.steps, train_images, test_images, device)
            except Exception as e:  # one variant's failure is a result: note it, go on
                row = {"label": variant.label, "batch": batch, "error": f"{type(e).__name__}: {str(e).splitlines()[0]}"}
            rows.append(row)
            print(row, file=sys.stderr, flush=True)
            # written after every variant: a call cut short by its time limit keeps what it measured
            report(args, machine, rows)


def report(args: argparse.Namespace, machine: str, rows: list[dict]) -> None:
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine,
        "torch": torch.__version__,
        "epochs": args.epochs,
        "steps_per_epoch": args.steps or "all",
        "rows": rows,
    }
    lines = [
        f"Training-step variants, {result['date']}, {machine}, torch {torch.__version__}, bf16 unless said, "
        f"{args.epochs} epochs from seed {SEED}",
        "",
        "| variant | batch | steady epoch, s | images/s | first epoch, s | each epoch's loss | test MSE |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['label']} | {r['batch']} | failed: {r['error']} | | | | |")
        else:
            lines.append(
                f"| {r['label']} | {r['batch']} | {r['steady_seconds']:.3f} | {r['images_per_second']:,.0f} | "
                f"{r['epoch_seconds'][0]:.2f} | {' · '.join(f'{v:.1f}' for v in r['epoch_losses'])} | "
                f"{r['test_mse']:.4f} |"
            )
    write_report(args.out, "gpu_variants", result, lines)


if __name__ == "__main__":
    main()
