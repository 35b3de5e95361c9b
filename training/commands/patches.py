"""python -m training patches: an RGB data set cut from scikit-learn's photographs."""

from __future__ import annotations

import argparse

from training.commands.common import add_debug
from training.images import write_sample_patches


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("patches", help="write an RGB data set cut from the photographs scikit-learn ships")
    parser.set_defaults(handler=run)
    parser.add_argument("out", help="folder to write (one subfolder per photograph)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--stride", type=int, default=16)
    add_debug(parser)


def run(args: argparse.Namespace) -> int:
    if args.size < 4 or args.stride < 1:
        raise ValueError("--size must be at least 4 and --stride at least 1")
    print(f"wrote {write_sample_patches(args.out, args.size, args.stride)} patches to {args.out}")
    return 0
