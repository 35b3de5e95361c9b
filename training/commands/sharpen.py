"""python -m training sharpen: a sharper decoder for a checkpoint's frozen encoder."""

from __future__ import annotations

import argparse
from dataclasses import asdict, fields, replace

from training.augment import POLICIES
from training.commands.common import add_data_dir, add_debug, add_device, flag, shown, widths
from training.fork import FORKABLE, fork
from training.loop import PRECISIONS, TrainingError
from training.model import DECODERS
from training.sharpen import SharpenConfig, saved_sharpen_config, sharpen

# what a resumed sharpening may change: the rest would make it another run (a fork, training/fork.py)
RESUMABLE = ("steps", "device")


def policy(text: str) -> tuple[str, ...]:
    """--augment's value: 'color,translation' as a tuple; 'none' as none."""
    return tuple(p for p in text.split(",") if p and p != "none")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sharpen",
        help="train a sharper decoder for a checkpoint's frozen encoder (distilled from its own, then "
        "adversarially) into a sharpened checkpoint with the same latent space",
    )
    parser.set_defaults(handler=run)
    parser.add_argument(
        "checkpoint", help="the checkpoint to sharpen (it needs its sampler: python -m training sampler)"
    )
    parser.add_argument("--out", required=True, help="the sharpened checkpoint folder to write")
    parser.add_argument("--steps", type=int, help=f"decoder and discriminator steps (default {SharpenConfig.steps})")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float, help="the decoder's learning rate once the adversarial term is on")
    parser.add_argument("--distill-lr", type=float, help="the decoder's learning rate while it distils the parent's")
    parser.add_argument("--disc-lr", type=float, help="the discriminator's learning rate")
    parser.add_argument("--feature-weight", type=float, help="weight of the discriminator-feature reconstruction")
    parser.add_argument("--adversarial-weight", type=float, help="factor of the adaptive adversarial weight")
    parser.add_argument(
        "--mse-budget",
        type=float,
        help="the training reconstructions' MSE the adversarial term may raise, as a multiple of the distilled "
        "decoder's, where the adversarial phase starts (default 1.08; the weight follows it); 0: a fixed weight",
    )
    parser.add_argument(
        "--mixture-weight",
        type=float,
        help="the adversarial term on drawn latents (mixture draws and points between them) against the one on "
        "reconstructions",
    )
    parser.add_argument(
        "--prior-share",
        type=float,
        help="the share of drawn latents drawn from the prior N(0, I) rather than the mixture (default 0)",
    )
    parser.add_argument("--prior-start", type=int, help="the step from which --prior-share applies (default 0)")
    parser.add_argument(
        "--noise-scale",
        type=float,
        help="the reconstructions' latents, mu + scale·sigma·eps: 1 posterior samples, 0 the means",
    )
    parser.add_argument("--adversarial-start", type=int, help="steps distilling the parent before the adversarial term")
    add_network_flags(parser)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--eval-every", type=int, help="steps between evaluations and checkpoints")
    add_device(parser, default=None)
    parser.add_argument("--resume", action="store_true", help="continue the sharpening in --out where it stopped")
    parser.add_argument(
        "--fork",
        metavar="RUN",
        help="continue a copy of the sharpening saved in RUN into --out from its step, with another --seed or "
        "adversarial recipe (--lr, --disc-lr, --ema, ...): recipes or seeds compared from one distilled decoder",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_data_dir(parser)
    add_debug(parser)


def add_network_flags(parser: argparse.ArgumentParser) -> None:
    """The decoder's and the discriminator's flags."""
    parser.add_argument("--disc-width", type=int, help="channels of each patch discriminator's first convolution")
    parser.add_argument(
        "--local-share",
        type=float,
        help="the share of the discriminator's verdict given to a verdict per pixel on its 7 × 7 neighbourhood, "
        "at full resolution: the edges' profile (default 0: no such head)",
    )
    parser.add_argument(
        "--decoder",
        choices=DECODERS,
        help="residual (default): a new, larger decoder distilled from the parent's, then sharpened; mirror: the "
        "parent's own decoder, fine-tuned",
    )
    parser.add_argument(
        "--decoder-channels",
        type=widths,
        help="the residual decoder's comma-separated widths, smallest side first (default: 128 halving to the image)",
    )
    parser.add_argument(
        "--augment",
        type=policy,
        help=f"DiffAugment's policy for the discriminator's images, of {','.join(POLICIES)} (default all), or none",
    )
    parser.add_argument(
        "--augment-target",
        type=float,
        help="adaptive augmentation's target for the discriminator's mean sign on real images (default 0.6); "
        "0: augment every image",
    )
    parser.add_argument("--r1-gamma", type=float, help="the R1 penalty's gamma on real images (0: none)")
    parser.add_argument("--r1-every", type=int, help="steps between R1 penalties (lazy regularisation)")
    parser.add_argument("--ema", type=float, help="decay of the saved decoder's moving average of the weights")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="fp32 (default); bf16: the steps under bf16 autocast, faster on CPUs with native bf16 (AMX) and on "
        "GPUs; auto: bf16 where it is native",
    )


def sharpen_config(args: argparse.Namespace) -> SharpenConfig:
    """A new run's recipe from the flags typed, or the saved one of the run --resume continues
    or --fork branches from, with the few flags that may change it; a TrainingError for any
    other flag that asks for another value."""
    typed = {f.name: getattr(args, f.name) for f in fields(SharpenConfig) if getattr(args, f.name, None) is not None}
    if args.resume and args.fork:
        raise TrainingError("--resume continues --out and --fork starts --out from another run; pass one of them.")
    if not (args.resume or args.fork):
        return SharpenConfig(**typed)
    saved_in, allowed = (args.fork, FORKABLE) if args.fork else (args.out, RESUMABLE)
    saved = saved_sharpen_config(saved_in)
    changed = [
        f"{flag(name)} {shown(value)} (saved: {shown(getattr(saved, name))})"
        for name, value in typed.items()
        if name not in allowed and value != getattr(saved, name)
    ]
    if changed:
        may = "--steps and --device"
        if args.fork:
            may = "--seed, --steps, --device, --eval-every and the adversarial phase's flags"
        raise TrainingError(
            f"{'--fork' if args.fork else '--resume'} continues {saved_in} as it was saved, and {', '.join(changed)} "
            f"would change it; drop them (it changes only {may}) or start again with another --out."
        )
    return replace(saved, **{k: v for k, v in typed.items() if k in allowed})


def run(args: argparse.Namespace) -> int:
    config = sharpen_config(args)
    if args.fork:
        fork(args.fork, args.out, asdict(config))
    metrics = sharpen(
        args.checkpoint,
        config,
        args.out,
        data_dir=args.data_dir,
        resume=args.resume or bool(args.fork),
        progress=not args.quiet,
    )
    print(
        f"saved {args.out}: test MSE {metrics['mse_per_pixel']:.5f} "
        f"(its parent's {metrics['parent_mse_per_pixel']:.5f}), "
        f"-ELBO {metrics['neg_elbo_nats']:.2f} nats, {metrics['train_seconds']:.1f} s"
    )
    return 0
