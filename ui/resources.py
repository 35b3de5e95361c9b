"""What the page caches. Models, atlases and browser bundles are st.cache_resource: one object
shared by every session and never mutated, where cache_data would unpickle a copy of their
megabytes on every run of every session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

import training
from explorer.atlas import Atlas, AtlasError, display_name, load_atlas
from explorer.live import (
    browser_bundle,
    cached_decoder_onnx,
    frontend_script,
    points_bundle,
    principal_plane,
    thumbnails_bundle,
)
from explorer.neighbours import TrainingImages, find_training_images
from training.checkpoint import HISTORY, load_likelihood_model
from training.data import default_data_root
from training.sampler import MixtureSampler, load_sampler
from ui.serving import HERE, without_server_paths


@st.cache_resource(max_entries=8, show_spinner="Loading model…")
def get_model(folder: str) -> training.ConvVAE:
    """A model in eval mode; shared by every session, never mutated."""
    return training.load_model(folder, device="cpu")


@st.cache_resource(max_entries=8, show_spinner="Loading model…")
def get_likelihood_model(folder: str) -> training.ConvVAE:
    """The model anomaly scores use: the checkpoint's own, or a sharpened one's encoder with its
    parent's decoder (training.checkpoint.load_likelihood_model); shared, never mutated."""
    return load_likelihood_model(folder, device="cpu")


@st.cache_resource(max_entries=8, show_spinner=False)
def get_atlas(folder: str, latent_dim: int) -> Atlas | None:
    """The checkpoint's atlas (read-only arrays), shared by every session."""
    return load_atlas(folder, latent_dim)


@st.cache_resource(max_entries=8, show_spinner=False)
def get_sampler(folder: str, latent_dim: int) -> MixtureSampler | None:
    """The checkpoint's mixture fitted to its aggregate posterior; None when it has none or an
    unusable one (its error is shown in the sidebar)."""
    try:
        return load_sampler(folder, latent_dim)
    except training.CheckpointError as error:
        st.sidebar.warning(without_server_paths(str(error)))
        return None


def atlas_or_none(folder: str, latent_dim: int) -> Atlas | None:
    """The checkpoint's atlas; None when it has none or a broken one (warned about once, on load)."""
    try:
        return get_atlas(folder, latent_dim)
    except AtlasError:
        return None


@st.cache_resource
def live_components() -> tuple:
    """The in-browser components (registered once per process): the controls and the map, each
    sent small JSON per run (the bundles they decode and draw come over HTTP: ui/bundles.py)."""
    script = frontend_script(HERE / "frontend")
    controls = st.components.v2.component(
        "latent_explorer.live_latent", js=script, css=(HERE / "frontend" / "controls.css").read_text()
    )
    atlas_map = st.components.v2.component(
        "latent_explorer.atlas_map", js=script, css=(HERE / "frontend" / "atlas_map.css").read_text()
    )
    return controls, atlas_map


@st.cache_resource
def sketch_component():
    """The drawing pad of the anomaly view (registered once per process)."""
    return st.components.v2.component(
        "latent_explorer.sketch",
        js=(HERE / "frontend" / "sketch.js").read_text(),
        css=(HERE / "frontend" / "sketch.css").read_text(),
    )


@st.cache_resource(max_entries=8, show_spinner="Exporting the decoder for the browser…")
def browser_data(_model: training.ConvVAE, folder: str) -> tuple[str, bytes]:
    """(bundle id, bytes): the folder's decoder as ONNX, for the browser."""
    return browser_bundle(cached_decoder_onnx(_model, default_data_root() / "onnx"))


@st.cache_resource(max_entries=16, show_spinner=False)
def browser_points(folder: str, latent_dim: int, split: str) -> tuple[str, bytes] | None:
    """(bundle id, bytes) of the atlas's points of SPLIT ("test" or "training") for the map, or
    None when the atlas has none of that split."""
    atlas = atlas_or_none(folder, latent_dim)
    if atlas is None:
        return None
    if split == "test":
        names = None if atlas.names is None else tuple(display_name(name) for name in atlas.names)
        return points_bundle(atlas.means, atlas.embedding, atlas.labels, atlas.index, names)
    if atlas.train_embedding is None:
        return None
    rows = np.arange(len(atlas.train_labels))
    return points_bundle(
        atlas.train_means, atlas.train_embedding, atlas.train_labels, rows, drawn_after=atlas.embedding
    )


@st.cache_resource(max_entries=8, show_spinner=False)
def browser_thumbnails(folder: str, latent_dim: int) -> tuple[str, bytes] | None:
    """(bundle id, bytes) of the atlas's thumbnail sheet for the map's hover cards, or None."""
    atlas = atlas_or_none(folder, latent_dim)
    if atlas is None or atlas.thumbnails is None:
        return None
    return thumbnails_bundle(atlas.thumbnails, atlas.thumbnail_columns, len(atlas))


@st.cache_resource(max_entries=4, show_spinner="Reading the training images…")
def get_training_images(folder: str, _model: training.ConvVAE, data_root: str | None) -> TrainingImages:
    """The checkpoint's training images (explorer/neighbours.py), looked for where the training
    commands look (DATA_ROOT: $LATENT_EXPLORER_DATA, part of the key); raises training.DataError."""
    return find_training_images(_model.checkpoint_config["dataset"], _model.config.image_shape)


@st.cache_data(max_entries=8, show_spinner=False)
def pad_plane_json(folder: str, latent_dim: int) -> dict | None:
    atlas = atlas_or_none(folder, latent_dim)
    return None if atlas is None else principal_plane(atlas.means).to_json()


@st.cache_data(max_entries=8, show_spinner=False)
def training_history(folder: str, modified: float) -> list[dict]:
    """The checkpoint's history.jsonl rows, cached until the file changes (MODIFIED, its mtime:
    a run still training into the folder adds a row at each evaluation)."""
    return training.read_history(folder)


def history_rows(folder: str) -> list[dict] | None:
    """training_history of FOLDER's history.jsonl; None when it has none."""
    path = Path(folder) / HISTORY
    return training_history(folder, path.stat().st_mtime) if path.is_file() else None
