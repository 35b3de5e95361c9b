"""Public mode: the page served to visitors, who choose among listed checkpoints and see no
server path."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import streamlit as st

from explorer.models import available_checkpoints, hide_paths, public_mode

HERE = Path(__file__).resolve().parent.parent
CHECKPOINTS = HERE / "checkpoints"


def is_public_page() -> bool:
    """$LATENT_EXPLORER_PUBLIC=1: the page for visitors (no path field, no server path shown)."""
    return public_mode(os.environ)


def listed_checkpoints() -> dict[str, Path]:
    """The picker's {name: folder}: the bundled checkpoints and $LATENT_EXPLORER_CHECKPOINTS's."""
    return available_checkpoints(CHECKPOINTS, os.environ.get("LATENT_EXPLORER_CHECKPOINTS", ""))


def under_base_path(path: str) -> str:
    """The absolute URL path of PATH (relative, e.g. "bundles/") under the server's base path."""
    base = str(st.get_option("server.baseUrlPath") or "").strip("/")
    return f"/{base}/{path}" if base else f"/{path}"


def without_server_paths(text: str) -> str:
    """TEXT as the page shows it: in public mode, with every server path taken out."""
    return hide_paths(text, listed_checkpoints()) if is_public_page() else text


def shell_path(folder: str) -> str:
    """FOLDER as one would type it in a shell at the project's root (where `make app` runs); in
    public mode a folder outside the project is not named."""
    path = Path(folder).resolve()
    return shlex.quote(str(path.relative_to(HERE)) if path.is_relative_to(HERE) else without_server_paths(str(path)))
