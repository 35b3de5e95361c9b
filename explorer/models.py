"""Finding checkpoint folders for the model picker."""

from __future__ import annotations

from pathlib import Path

from training.checkpoint import CONFIG, WEIGHTS


def list_checkpoints(root: str | Path) -> list[str]:
    """Names of the sub-folders of ROOT that look like checkpoints (config.json and weights),
    sorted; invalid ones are still listed so that picking one shows why it fails."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / CONFIG).is_file() and (p / WEIGHTS).is_file())
