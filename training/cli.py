"""python -m training {train,sharpen,evaluate,atlas,anomaly,score,sampler,patches,emoji} ...

Errors a user can cause (a bad file, a bad flag, no network) print one line and exit non-zero;
--debug shows the traceback as well. Each subcommand is a module of training/commands/."""

from __future__ import annotations

import argparse
import os
import sys

import torch

from training.checkpoint import CheckpointError
from training.commands import COMMANDS
from training.commands.common import EXIT_USER_ERROR
from training.data import DataError
from training.loop import TrainingError, TrainingInterrupted


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


# flags and arguments that name files or folders
PATH_ARGUMENTS = ("out", "cache", "checkpoint", "data_dir", "ood_data_dir", "csv", "sheet", "paths")


def _expand_home(args: argparse.Namespace) -> None:
    """~ in paths the shell left as typed (`--out=~/runs/x`: bash expands ~ only at a word's
    start), so that no folder named "~" appears in the working directory."""
    for name in PATH_ARGUMENTS:
        value = getattr(args, name, None)
        if isinstance(value, str):
            setattr(args, name, os.path.expanduser(value))
        elif isinstance(value, list):
            setattr(args, name, [os.path.expanduser(v) for v in value])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _expand_home(args)
    try:
        return args.handler(args)
    except TrainingInterrupted as e:
        print(str(e), file=sys.stderr)
        return e.exit_code
    except (DataError, CheckpointError, TrainingError, ValueError) as e:
        if args.debug:
            raise
        if not (isinstance(e, TrainingError) and e.every_process and os.environ.get("RANK", "0") != "0"):
            sys.stderr.write(f"error: {e}\n")  # one write: a torchrun's processes share the terminal
        return EXIT_USER_ERROR
    except torch.OutOfMemoryError:  # evaluate, atlas, anomaly, score (train says more, above)
        if args.debug:
            raise
        sys.stderr.write("error: The GPU ran out of memory; free it of other programs or pass --device cpu.\n")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
