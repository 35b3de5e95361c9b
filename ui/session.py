"""The session's start (what the URL asks for) and the model the page shows, with the sidebar's
picker that chooses it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import streamlit as st

import training
from explorer.atlas import AtlasError
from explorer.concept import format_concept, parse_concept
from explorer.latent import inactive_dimensions, latent_ranges
from explorer.models import class_names
from explorer.params import VIEWS, format_latent, parse_latent, parse_link
from ui.page_state import state
from ui.resources import get_atlas, get_model
from ui.serving import CHECKPOINTS, is_public_page, without_server_paths
from ui.views import interpolate

# the page opens on the first of these it has: the sharpened decoder, else its VAE
DEFAULT_MODELS = ("mnist-z8-sharp", "mnist-z8")


def init_session(available: dict[str, Path]) -> None:
    """First run of a session: read the URL once, remember warnings to show."""
    if state.has("initialised"):
        return
    names = list(available)
    default = next((name for name in DEFAULT_MODELS if name in names), names[0] if names else None)
    link = parse_link(st.query_params.to_dict(), names, default)
    defaults = {
        "model_choice": link.model,
        "view": link.view,
        "url_latent": st.query_params.get("z"),
        "url_concept": st.query_params.get("concept"),
        "warnings": link.warnings,
        "active_folder": None,
        "rng_seed": 0,
        "live_decoding": True,
        "live_unavailable": None,
    }
    for name, value in defaults.items():
        if not state.has(name):
            setattr(state, name, value)
    state.initialised = True


def model_picker(available: dict[str, Path], pair: tuple[Path, Path] | None) -> None:
    """The sidebar's model picker, and for a model with a sharpened sibling (PAIR) the switch
    between the two decoders; choose_model reads their values before they are drawn."""
    st.header("Model")
    if available:
        st.selectbox("Checkpoints" if is_public_page() else "Bundled checkpoints", list(available), key="model_choice")
    if not is_public_page():  # a visitor of a shared server chooses among the listed ones only
        st.text_input("…or a checkpoint folder on this machine", key="model_path", placeholder="/path/to/checkpoint")
    if pair is None:
        return
    state.decoder_kind = "sharpened" if Path(state.active_folder).resolve() == pair[1].resolve() else "VAE"
    st.segmented_control(
        "Decoder",
        ["sharpened", "VAE"],
        key="decoder_kind",
        on_change=on_decoder_switch,
        args=(available, pair),
        help="The sharpened decoder was trained adversarially on this model's encoder, so z means the same in "
        "both; the VAE's draws the average of the images a latent leaves open.",
    )


def on_decoder_switch(available: dict[str, Path], pair: tuple[Path, Path]) -> None:
    """The Decoder switch: the other checkpoint of the pair, by its picker name where it has one."""
    wanted = pair[1] if state.get("decoder_kind") == "sharpened" else pair[0]
    name = next((n for n, folder in available.items() if folder.resolve() == wanted.resolve()), None)
    if name is not None:
        state.model_choice = name
        state.model_path = ""
    elif not is_public_page():
        state.model_path = str(wanted)


def choose_model(available: dict[str, Path], picker: object) -> tuple[str, training.ConvVAE]:
    """The model the picker names among AVAILABLE. Its widgets are drawn into PICKER (a sidebar
    container) after the latent panel, so the first image does not wait for them. A checkpoint
    that fails to load shows its error and the page stays on the previous model."""
    typed = "" if is_public_page() else (state.get("model_path") or "").strip()
    if typed:  # "~/runs/my-model" as a shell would read it: the page gets the text before any shell does
        wanted = os.path.expanduser(typed)
    else:
        wanted = str(available[state.model_choice]) if state.get("model_choice") in available else ""
    previous = state.active_folder
    try:
        if not wanted:
            raise training.CheckpointError(
                f"No checkpoints in {CHECKPOINTS}; train one with `python -m training train`."
            )
        model = get_model(wanted)
        folder = wanted
    except training.CheckpointError as error:
        st.sidebar.error(without_server_paths(str(error)))
        if previous is None:
            with picker:
                model_picker(available, None)
            st.error(without_server_paths(f"No model could be loaded: {error}"))
            st.stop()
        folder, model = previous, get_model(previous)
    if folder != previous:
        on_model_change(folder, model)
    return folder, model


def on_model_change(folder: str, model: training.ConvVAE) -> None:
    """Another model: its ranges, unused latents, a start for z (the URL's, else the origin),
    the concept the URL gives, and the views' starting state."""
    latent_dim = model.config.latent_dim
    try:
        atlas = get_atlas(folder, latent_dim)
    except AtlasError as error:
        state.warnings.append(str(error))
        atlas = None
    low, high = latent_ranges(None if atlas is None else atlas.means, latent_dim)
    state.ranges = (low, high)
    state.inactive = inactive_dimensions(None if atlas is None else atlas.means)
    state.active_folder = folder
    start = np.clip(np.zeros(latent_dim, np.float32), low, high)
    url_latent = state.get("url_latent")
    state.drop("url_latent")
    if url_latent is not None:
        parsed, warnings = parse_latent(url_latent, low, high)
        state.warnings.extend(warnings)
        if parsed is not None:
            start = parsed
    state.set_latent(start)
    state.map_selection = []
    state.map_training_image = None
    state.concept = None
    state.drop("concept_from")
    state.drop("concept_to")
    url_concept = state.get("url_concept")
    state.drop("url_concept")
    if url_concept is not None:
        state.concept, warnings = parse_concept(url_concept, low, high)
        state.warnings.extend(warnings)
    interpolate.start_endpoints(atlas, class_names(model), latent_dim)


def share_in_link(folder: str) -> None:
    """The URL's query string follows the page: the model, z, the view and the concept."""
    shared = {"model": Path(folder).name, "z": format_latent(state.latent)}
    # the view is None while the user has deselected every view: keep the last one in the link
    if state.view in VIEWS:
        shared["view"] = state.view
    if state.concept is not None:
        shared["concept"] = format_concept(state.concept)
    elif "concept" in st.query_params:
        del st.query_params["concept"]
    st.query_params.update(shared)
