"""latent-explorer: drive a VAE's latent vector by hand, see where it lies among the encoded
test set, interpolate, traverse, score anomalies. The page's outline: the session and its
model, the latent panel (controls, map, the view below) and the sidebar; each part is a module
of ui/, and the work is done in explorer/."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

import training
from explorer.models import class_names, sharpened_pair
from explorer.params import VIEWS as VIEW_NAMES
from ui.atlas_map import atlas_map
from ui.bundles import bundle_routes
from ui.context import ViewContext
from ui.controls import class_picker, compared_decoders, latent_buttons, latent_controls, unused_latents_sentence
from ui.page_state import current_latent, state
from ui.resources import atlas_or_none, get_sampler
from ui.serving import listed_checkpoints, without_server_paths
from ui.session import choose_model, init_session, model_picker, share_in_link
from ui.startup import warm_start
from ui.views import VIEWS, interpolate


@st.fragment
def latent_panel(folder: str, model: training.ConvVAE) -> None:
    """The controls and the decoded image, the map and the view below: one fragment, so a
    control moves the image, the map's star and the view without rerunning the sidebar."""
    # first: the callbacks have set z, and the link's message then precedes the controls' 81-decode grid
    share_in_link(folder)
    latent_dim = model.config.latent_dim
    atlas = atlas_or_none(folder, latent_dim)
    if model.config.num_classes:
        class_picker(model)
    decoders = compared_decoders(folder, model, sharpened_pair(folder, model.checkpoint_config))
    live = latent_controls(decoders)
    latent_buttons(latent_dim, get_sampler(folder, latent_dim), atlas)
    # the interpolation's path belongs to its view; under the others it would be a stray line
    path = interpolate.path_latents() if state.view == "interpolate" else None
    atlas_map(folder, model, atlas, path, live)
    st.divider()
    # Told its value on every run: a control whose value came from the link, never from a
    # click, would otherwise be drawn again with nothing selected while its view shows.
    state.view = state.get("view")
    view = st.segmented_control("View", VIEW_NAMES, key="view", format_func=str.capitalize)
    if view in VIEWS:
        context = ViewContext(folder, model, atlas, decoders, current_latent(), live, tuple(class_names(model)))
        VIEWS[view].render(context)


def model_facts(folder: str, model: training.ConvVAE) -> None:
    """The sidebar under the picker: the model's size and figures, and where it decodes."""
    st.caption(
        f"{Path(folder).name}: latent size {model.config.latent_dim}, {'×'.join(map(str, model.config.image_shape))} "
        "images"
    )
    st.toggle(
        "Decode in the browser",
        key="live_decoding",
        help="Run the decoder in your browser (WebAssembly), so the image follows the "
        "sliders while you drag. Off: decode on the server when a slider is released.",
    )
    metrics = training.read_metrics(folder)
    if metrics:
        st.caption(
            f"test MSE {metrics.get('mse_per_pixel', float('nan')):.4f} · "
            f"kNN-5 {metrics.get('knn5_accuracy', float('nan')):.3f} · "
            f"−ELBO {metrics.get('neg_elbo_nats', float('nan')):.1f} nats"
        )
    if state.inactive:
        inactive = state.inactive
        it = "it" if len(inactive) == 1 else "them"
        st.caption(
            f"{unused_latents_sentence(inactive, model.config.latent_dim)} The encoder gives {it} "
            f"nearly the same value for every test image, so the decoder ignores {it}."
        )


def main() -> None:
    st.set_page_config(page_title="latent-explorer", page_icon="🧭", layout="wide")
    available = listed_checkpoints()
    init_session(available)
    picker = st.sidebar.container()  # first in the sidebar, filled after the latent panel
    folder, model = choose_model(available, picker)
    st.title("latent-explorer")
    for warning in state.warnings:
        st.warning(without_server_paths(warning))
    latent_panel(folder, model)
    with picker:
        model_picker(available, sharpened_pair(folder, model.checkpoint_config))
    with st.sidebar:
        model_facts(folder, model)


if __name__ == "__main__":  # a run of the page
    main()
else:  # `streamlit run app.py` imports this file first, and then serves it as an st.App
    app = st.App(__file__, lifespan=warm_start, routes=bundle_routes())
