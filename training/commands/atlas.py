"""python -m training atlas: the encoded test and training images laid out by UMAP, the page's map."""

from __future__ import annotations

import argparse

from training.atlas import build_atlas
from training.commands.common import add_data_dir, add_debug, check_limit


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("atlas", help="encode the test set and lay it out with UMAP, into the checkpoint")
    parser.set_defaults(handler=run)
    parser.add_argument("checkpoint")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N test images (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--test-only",
        action="store_true",
        help="lay out the test set alone (the training split then has no place on the map)",
    )
    add_data_dir(parser)
    add_debug(parser)


def run(args: argparse.Namespace) -> int:
    check_limit(args.limit)
    path = build_atlas(
        args.checkpoint, data_dir=args.data_dir, limit=args.limit, seed=args.seed, test_only=args.test_only
    )
    print(f"wrote {path}")
    return 0
