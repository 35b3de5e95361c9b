"""python -m training emoji: the Noto emoji as a folder per category."""

from __future__ import annotations

import argparse

from training.commands.common import add_debug
from training.data import default_data_root
from training.emoji import fetch_package, write_emoji_folder


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "emoji", help="write the Noto emoji (npm's emoji-datasource-google) as a folder per category"
    )
    parser.set_defaults(handler=run)
    parser.add_argument("out", help="folder to write (one subfolder per category)")
    parser.add_argument("--cache", help="where the npm package is kept (default: the user cache)")
    add_debug(parser)


def run(args: argparse.Namespace) -> int:
    tarball = fetch_package(args.cache or default_data_root() / "npm")
    print(f"wrote {write_emoji_folder(tarball, args.out)} emoji to {args.out}")
    return 0
