"""python -m training sampler: the Gaussian mixture behind the page's Random (fitted)."""

from __future__ import annotations

import argparse

from training.commands.common import add_data_dir, add_debug
from training.evaluate import checkpoint_data, encode_dataset, load_for_batches
from training.loop import pick_device
from training.sampler import fit_mixture, save_sampler


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sampler",
        help="fit a Gaussian mixture to the training set's encoded means "
        "(sampler.safetensors in the checkpoint: better random samples)",
    )
    parser.set_defaults(handler=run)
    parser.add_argument("checkpoint")
    parser.add_argument("--components", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    add_data_dir(parser)
    add_debug(parser)


def run(args: argparse.Namespace) -> int:
    if args.components < 1:
        raise ValueError("--components must be at least 1")
    model = load_for_batches(args.checkpoint, pick_device("auto"))
    train_split = checkpoint_data(model, args.data_dir)[0]
    means, _ = encode_dataset(model, train_split.images, train_split.labels)
    path = save_sampler(args.checkpoint, fit_mixture(means.numpy(), args.components, args.seed))
    print(f"wrote {path} ({args.components} components fitted to {len(means)} training means)")
    return 0
