"""Finding checkpoint folders for the model picker, and what a checkpoint calls its classes."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

from training.checkpoint import CONFIG, WEIGHTS
from training.model import ConvVAE


def list_checkpoints(root: str | Path) -> list[str]:
    """Names of the sub-folders of ROOT that look like checkpoints (config.json and weights),
    sorted; invalid ones are still listed so that picking one shows why it fails."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / CONFIG).is_file() and (p / WEIGHTS).is_file())


def available_checkpoints(root: str | Path, listed: str = "") -> dict[str, Path]:
    """{name: folder} of the picker: ROOT's checkpoints (list_checkpoints), then each checkpoint
    folder of LISTED, a path-separated list (an operator's $LATENT_EXPLORER_CHECKPOINTS), named by
    its folder; a listed folder whose name is taken, or that holds no checkpoint, is left out."""
    available = {name: Path(root) / name for name in list_checkpoints(root)}
    for entry in listed.split(os.pathsep):
        folder = Path(entry.strip()).expanduser()
        if entry.strip() and (folder / CONFIG).is_file() and (folder / WEIGHTS).is_file():
            available.setdefault(folder.name, folder)
    return available


def public_mode(environ: Mapping[str, str]) -> bool:
    """Whether $LATENT_EXPLORER_PUBLIC asks for the public page (1, true, yes, on)."""
    return environ.get("LATENT_EXPLORER_PUBLIC", "").strip().lower() in ("1", "true", "yes", "on")


def hide_paths(text: str, folders: Mapping[str, Path]) -> str:
    """TEXT with every server path taken out, for the public page: a checkpoint folder of
    FOLDERS ({name: folder}) becomes its name, any other absolute path "a folder on the server"."""
    for name, folder in sorted(folders.items(), key=lambda item: -len(str(item[1]))):
        for spelling in {str(folder), str(Path(folder).resolve())}:
            text = text.replace(spelling, name)
    return _ABSOLUTE_PATH.sub("a folder on the server", text)


# an absolute path (POSIX, ~, or a Windows drive) not inside a word or a URL
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~])(?:~|[A-Za-z]:)?[\\/](?:[^\s\\/:;,'\"()`]+[\\/]?)+")


def sharpened_pair(folder: str | Path, config: dict) -> tuple[Path, Path] | None:
    """(the VAE's folder, its sharpened decoder's folder) when FOLDER, whose config.json is CONFIG,
    is one of such a pair and the other is in a folder beside it (for a sharpened checkpoint, its
    parent by name, or by the path it recorded relative to itself); None otherwise. The two
    share their encoder, so one z means the same in both."""
    folder = Path(folder)
    sharpened = config.get("sharpen")
    if sharpened is not None:
        for candidate in (
            folder.parent / str(sharpened.get("parent", "")),
            folder / str(sharpened.get("parent_path", "")),
        ):
            if candidate.name and (candidate / CONFIG).is_file() and candidate.resolve() != folder.resolve():
                return candidate, folder
        return None
    for sibling in sorted(folder.parent.iterdir()) if folder.parent.is_dir() else []:
        if sibling == folder or not (sibling / CONFIG).is_file():
            continue
        try:
            other = json.loads((sibling / CONFIG).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue  # a broken folder beside it is not a sibling; the picker shows its error
        recorded = other.get("sharpen") if isinstance(other, dict) else None
        if isinstance(recorded, dict) and (
            (sibling / str(recorded.get("parent_path", ""))).resolve() == folder.resolve()
            or recorded.get("parent") == folder.name
        ):
            return folder, sibling
    return None


def class_names(model: ConvVAE) -> list[str]:
    """The checkpoint's class names; a conditional model without them gets its class numbers."""
    names = list(model.checkpoint_config.get("dataset", {}).get("class_names", []))
    return names or [str(k) for k in range(model.config.num_classes)]
