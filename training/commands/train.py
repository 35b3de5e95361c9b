"""python -m training train: train a conv VAE into a checkpoint folder, or resume one."""

from __future__ import annotations

import argparse
import shlex
from dataclasses import fields
from pathlib import Path

from training.checkpoint import CONFIG, STATE_JSON, CheckpointError, read_json
from training.commands.common import add_data_dir, add_debug, add_device, flag, shown, widths
from training.data import DATASET_NAMES, class_count
from training.loop import PRECISIONS, TrainingError
from training.model import LOSSES, ModelConfig
from training.train import (
    INITS,
    LR_SCHEDULES,
    RECIPES,
    RESUMABLE,
    TrainConfig,
    planned_steps,
    resume_configs,
    saved_train_config,
    train,
)

HELP = "train a conv VAE and write a checkpoint folder"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    # Flags default to None so that only what the user typed overrides a recipe or a resumed run.
    parser = subparsers.add_parser("train", help=HELP)
    parser.set_defaults(handler=run)
    parser.add_argument("--out", required=True, help="checkpoint folder to write")
    parser.add_argument(
        "--dataset",
        choices=DATASET_NAMES,
        help="mnist (default), fashion-mnist, or folder: every PNG/JPEG under --data-dir (a class per subfolder)",
    )
    parser.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        help="'seed': the original project's 784·MSE+KL, "
        "Adam lr 5e-4, batch 32, 2000 iterations; 'fast': MNIST test MSE ≤ 0.012 and kNN-5 ≥ 0.96 soonest, "
        "60 epochs of batch 256 from a Kaiming start (lr 3e-3, weight decay 0.1, evaluated every "
        "10 epochs); 'handwriting': every training image distorted as handwriting varies (rotation, "
        "scale, shear, shift, stroke width, elastic). Flags typed beside it override its values",
    )
    add_schedule_flags(parser)
    add_distortion_flags(parser)
    parser.add_argument(
        "--printed-digits",
        type=int,
        help="add this many copies of 2,430 digits printed in 11 of the font designs Debian packages "
        "to MNIST's training digits (training/printed.py); the others measure (bench/handwriting.py)",
    )
    add_model_flags(parser)
    parser.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_data_dir(parser)
    add_debug(parser)


def add_schedule_flags(parser: argparse.ArgumentParser) -> None:
    """TrainConfig's flags: the schedule, the optimizer, the loss, where and how it runs."""
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (0: no limit)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        help="wsd (default): constant, then a cosine decay to 0 over the last 30%% of the steps; "
        "cosine: decay from the start; constant",
    )
    parser.add_argument("--warmup-steps", type=int, help="linear learning-rate warm-up (default 50; 0: none)")
    parser.add_argument(
        "--weight-decay", type=float, help="AdamW's decoupled weight decay on the weights, not the biases (default 0)"
    )
    parser.add_argument(
        "--init",
        choices=INITS,
        help="the weights' start: pytorch (default; its layers' own) or "
        "kaiming, N(0, 2/fan_in), which learns faster in a short run",
    )
    parser.add_argument("--loss", choices=LOSSES, help="bce: Bernoulli likelihood (default); mse: 784·MSE")
    parser.add_argument("--beta", type=float, help="weight on the KL term (1: the ELBO)")
    parser.add_argument("--seed", type=int)
    add_device(parser, default=None)
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="auto (default): bf16 autocast on CUDA and on CPUs with native bf16, else fp32",
    )
    parser.add_argument(
        "--eval-every", type=int, help="epochs between test-set evaluations and checkpoints (default 1)"
    )
    parser.add_argument(
        "--no-cuda-graphs",
        dest="cuda_graphs",
        action="store_const",
        const=False,
        help="on a GPU, launch each kernel of a step instead of replaying the step as a CUDA graph",
    )


def add_distortion_flags(parser: argparse.ArgumentParser) -> None:
    """The handwriting distortions drawn on the training images (training/handwriting.py)."""
    parser.add_argument("--distort-rotation", type=float, help="largest rotation of a training image, degrees")
    parser.add_argument("--distort-scale", type=float, help="largest change of its size, relative (0.1: ±10%%)")
    parser.add_argument("--distort-shear", type=float, help="largest slant, shift per unit of height")
    parser.add_argument("--distort-shift", type=float, help="largest shift, pixels")
    parser.add_argument(
        "--distort-thickness", type=float, help="largest thickening of its strokes, a share of a 3×3 dilation"
    )
    parser.add_argument(
        "--distort-elastic", type=float, help="largest elastic displacement, pixels (Simard et al. 2003)"
    )


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """ModelConfig's flags: the network's size and its images."""
    parser.add_argument("--latent-dim", type=int)
    parser.add_argument("--conv-channels", type=widths, help="comma-separated widths, e.g. 32,64,64")
    parser.add_argument("--hidden-dim", type=int)
    parser.add_argument(
        "--image-size",
        type=int,
        help="side of the square images (28 for the IDX sets; folder images are centre-cropped and resized to it)",
    )
    parser.add_argument("--channels", type=int, choices=(1, 3), help="1: gray, 3: RGB (folder data sets)")
    parser.add_argument(
        "--conditional",
        action="store_true",
        help="a conditional VAE: the encoder and the decoder "
        "also see the class label, and the page offers a class picker",
    )


def configs_from_args(args: argparse.Namespace) -> tuple[ModelConfig, TrainConfig]:
    """The configs a new run trains with: the recipe's values, then the flags typed."""
    train_values = dict(RECIPES[args.recipe]) if args.recipe else {}
    for f in fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            train_values[f.name] = value
    model_values = {}
    for f in fields(ModelConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            model_values[f.name] = value
    if args.conditional:
        model_values["num_classes"] = class_count(train_values.get("dataset", "mnist"), args.data_dir)
    if args.recipe == "seed" and args.epochs is None:
        train_values["epochs"] = 10_000  # the recipe stops on max_steps
    train_config = TrainConfig(**train_values)
    return ModelConfig(**model_values), train_config


def train_command(config: dict, out: str) -> str:
    """The `python -m training train` command that trains a checkpoint's CONFIG (its
    config.json) again, into OUT: a flag for every field that differs from its default, the
    inverse of configs_from_args (log_every, which changes no weight, has no flag). Fields a
    checkpoint predates take their defaults, as resuming it would. A sharpened checkpoint's is
    its parent's: the VAE whose encoder it keeps."""
    train_config = saved_train_config(config["train"])
    model_config = ModelConfig.from_dict(dict(config.get("sharpen", {}).get("parent_model", config["model"])))
    words = ["python", "-m", "training", "train", "--out", out]
    for source, default in ((train_config, TrainConfig()), (model_config, ModelConfig())):
        for f in fields(source):
            value = getattr(source, f.name)
            if value == getattr(default, f.name) or f.name == "log_every":
                continue
            if f.name == "cuda_graphs":
                words.append("--no-cuda-graphs")
            elif f.name == "num_classes":
                words.append("--conditional")
            else:
                words += [flag(f.name), shown(value)]
    path = config.get("dataset", {}).get("path")
    if path:
        words += ["--data-dir", path]
    return shlex.join(words)


def finished_steps(out: str, train_config: TrainConfig) -> int | None:
    """The run's step count when the run saved in OUT has reached the end TRAIN_CONFIG sets,
    else None (from config.json's steps per epoch and state.json's step; None if either is
    missing, and the training loop decides)."""
    try:
        per_epoch = read_json(Path(out) / CONFIG).get("steps_per_epoch")
        step = read_json(Path(out) / STATE_JSON).get("step")
    except CheckpointError:  # the resume itself says what is wrong
        return None
    if not isinstance(per_epoch, int) or not isinstance(step, int):
        return None
    return step if step >= planned_steps(train_config, per_epoch) else None


def changed_on_resume(args: argparse.Namespace, model_config: ModelConfig, train_config: TrainConfig) -> list[str]:
    """The flags typed with --resume that ask for other values than the run was saved with, as
    '--lr 0.001 (saved: 0.002)'. Flags that repeat the saved values are fine: the natural way
    to resume is the same command with --resume added."""
    typed = dict(RECIPES[args.recipe]) if args.recipe else {}
    typed.update(
        {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None}
    )
    changed = [
        (name, value, getattr(train_config, name))
        for name, value in typed.items()
        if name not in RESUMABLE and value != getattr(train_config, name)
    ]
    changed += [
        (f.name, getattr(args, f.name), getattr(model_config, f.name))
        for f in fields(ModelConfig)
        if getattr(args, f.name, None) is not None and getattr(args, f.name) != getattr(model_config, f.name)
    ]
    flags = [
        (
            "--no-cuda-graphs (saved: with CUDA graphs)"
            if name == "cuda_graphs"
            else f"{flag(name)} {shown(value)} (saved: {shown(saved)})"
        )
        for name, value, saved in changed
    ]
    if args.conditional and not model_config.num_classes:
        flags.append("--conditional (saved: not conditional)")
    return flags


def resumed_configs(args: argparse.Namespace) -> tuple[ModelConfig, TrainConfig]:
    """The configs of the run saved in --out, with the few flags a resume may change; a
    TrainingError for any other flag that asks for another value."""
    model_config, train_config = resume_configs(args.out, args.epochs, args.max_steps, args.device)
    changed = changed_on_resume(args, model_config, train_config)
    if changed:  # silently ignored, they would leave the user believing the run had changed
        *others, last = [flag(name) for name in RESUMABLE]
        raise TrainingError(
            f"--resume continues {args.out} as it was saved, and {', '.join(changed)} would change it; "
            f"drop them (a resumed run changes only {', '.join(others)} and {last}) or start a new run "
            "with another --out."
        )
    return model_config, train_config


def run(args: argparse.Namespace) -> int:
    if args.resume:
        model_config, train_config = resumed_configs(args)
        finished = finished_steps(args.out, train_config)
        if finished is not None:  # evaluating it again would only rewrite its metrics (evaluate --write's too)
            print(
                f"{args.out} has already run its {finished:,} steps; nothing to do (raise --epochs or --max-steps "
                "to train it further)."
            )
            return 0
    else:
        if (Path(args.out) / STATE_JSON).exists():
            raise TrainingError(
                f"{args.out} already holds a run; pass --resume to continue it or choose another --out."
            )
        model_config, train_config = configs_from_args(args)
    metrics = train(
        model_config, train_config, args.out, data_dir=args.data_dir, resume=args.resume, progress=not args.quiet
    )
    if not metrics:  # a data-parallel process other than the first: process 0 reports
        return 0
    print(
        f"saved {args.out}: test MSE {metrics['mse_per_pixel']:.5f}, -ELBO {metrics['neg_elbo_nats']:.2f} nats, "
        f"kNN-5 {metrics['knn5_accuracy']:.4f}, {metrics['active_units']} of {model_config.latent_dim} latents "
        f"in use, {metrics['train_seconds']:.1f} s"
    )
    return 0
