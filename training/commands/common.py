"""What the subcommands share: exit codes, the flags every command spells the same way, and
the checks on their values."""

from __future__ import annotations

import argparse
from pathlib import Path

from training.train import DEVICES

EXIT_USER_ERROR = 2
EXIT_PARTIAL = 1  # score: every readable file ranked, some files could not be read


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        help="folder holding the IDX files (default: $LATENT_EXPLORER_DATA, "
        "else ~/.cache/latent-explorer, downloading what is missing), or the folder of "
        "images for --dataset folder",
    )


def add_debug(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def add_device(parser: argparse.ArgumentParser, default: str | None = "auto") -> None:
    """--device; a training command's defaults to None, so that a recipe or a resumed run decides."""
    parser.add_argument("--device", choices=DEVICES, default=default)


def widths(text: str) -> tuple[int, ...]:
    """'32,64,64' as (32, 64, 64): how the width flags are typed."""
    return tuple(int(c) for c in text.split(","))


def flag(field: str) -> str:
    """The flag for a config field: --batch-size for batch_size."""
    return "--" + field.replace("_", "-")


def shown(value: object) -> str:
    """A config value as its flag takes it: 32,64,64 for a tuple of widths, none for no policy."""
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return str(value)


def check_limit(limit: int) -> None:
    """--limit, checked before any work: a negative one sliced off the last images instead."""
    if limit < 0:
        raise ValueError(f"--limit {limit}: must be 0 (all the test images) or a positive count")


def output_path(option: str, value: str | None, suffix: str | None = None) -> Path | None:
    """An output file's path, checked before any work: its folder exists, and its suffix."""
    if value is None:
        return None
    path = Path(value)
    if not path.parent.is_dir():
        raise ValueError(f"{option} {value}: the folder {path.parent} does not exist")
    if path.is_dir():
        raise ValueError(f"{option} {value}: is a folder; give a file name")
    if suffix and path.suffix.lower() != suffix:
        raise ValueError(f"{option} {value}: must end in {suffix}")
    return path
