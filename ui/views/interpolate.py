"""The Interpolate view: a strip of decodes from endpoint A to B (spherical or straight), a row
per decoder shown, drawn on the map too, downloadable as a GIF and a PNG."""

from __future__ import annotations

import numpy as np
import streamlit as st

import training
from explorer.atlas import Atlas, describe_point
from explorer.latent import clamp, interpolate, sample_prior
from explorer.render import decode_latents, gif_bytes, png_bytes, strip, upscale
from ui.context import ViewContext
from ui.controls import decoder_caption
from ui.page_state import chosen_label, current_latent, state


def start_endpoints(atlas: Atlas | None, names: list[str], latent_dim: int) -> None:
    """A new model's endpoints: its first two test images (or the origin and a sample), so the
    view shows something before the user picks its ends."""
    low, high = state.ranges
    if atlas is not None and len(atlas) > 1:
        state.end_a, state.end_b = clamp(atlas.means[0], low, high), clamp(atlas.means[1], low, high)
        state.end_a_label, state.end_b_label = describe_point(atlas, 0, names), describe_point(atlas, 1, names)
    else:
        state.end_a = np.zeros(latent_dim, np.float32)
        state.end_b = clamp(sample_prior(np.random.default_rng(0), latent_dim), low, high)
        state.end_a_label, state.end_b_label = "the origin", "a random sample"


def path_latents() -> np.ndarray | None:
    """The interpolation's latents (steps, D), or None before both endpoints are set."""
    if not (state.has("end_a") and state.has("end_b")):
        return None
    return interpolate(state.end_a, state.end_b, state.get("steps", 10), state.get("method", "slerp"))


def on_set_endpoint(end: str, latent_dim: int, atlas: Atlas | None, names: list[str]) -> None:
    source = getattr(state, f"source_{end}")
    if source == "current z":
        z = current_latent()
        label = "the sliders' z"
    elif source == "random sample":
        state.rng_seed += 1
        z = sample_prior(np.random.default_rng(state.rng_seed), latent_dim)
        label = "a random sample"
    else:  # a test image, by index
        row = min(int(np.searchsorted(atlas.index, getattr(state, f"index_{end}"))), len(atlas) - 1)
        z = atlas.means[row]
        label = describe_point(atlas, row, names)
    low, high = state.ranges
    setattr(state, f"end_{end}", clamp(z, low, high))
    setattr(state, f"end_{end}_label", label)


def endpoint_controls(context: ViewContext) -> None:
    """Where each endpoint comes from and its Set button; the steps and the path's kind."""
    atlas, latent_dim = context.atlas, context.model.config.latent_dim
    sources = ["current z", "random sample"] + (["test image"] if atlas is not None else [])
    columns = st.columns(4, vertical_alignment="bottom")
    for end, column in zip(("a", "b"), columns[:2]):
        with column:
            st.selectbox(f"Endpoint {end.upper()}", sources, key=f"source_{end}")
            if getattr(state, f"source_{end}") == "test image":
                st.number_input(
                    "test image #", 0, int(atlas.index.max()), key=f"index_{end}", value=0 if end == "a" else 1
                )
            st.button(
                f"Set {end.upper()}",
                key=f"set_{end}",
                on_click=on_set_endpoint,
                args=(end, latent_dim, atlas, list(context.class_names)),
                width="stretch",
            )
    with columns[2]:
        st.slider("Steps", 3, 24, 10, key="steps")
    with columns[3]:
        st.radio("Path", ["slerp", "lerp"], key="method", horizontal=True)


def render(context: ViewContext) -> None:
    endpoint_controls(context)
    path = path_latents()
    if path is None:
        st.caption("Set both endpoints to see the decoded path (and the path on the map).")
        return
    # what A and B are now: the selectors above say what "Set" would take, not what was set
    ends = f"{state.get('end_a_label', 'A')} → {state.get('end_b_label', 'B')}"
    decoders = context.decoders
    media = [
        interpolation_media(decoder, folder, path.tobytes(), chosen_label(decoder)) for folder, decoder in decoders
    ]
    for (folder, decoder), (shown, _, _) in zip(decoders, media):  # one strip per decoder, on the same path
        which = f" · {decoder_caption(folder, decoder)}" if len(decoders) > 1 else ""
        st.image(shown, caption=f"{ends} · {len(path)} steps, {state.method}{which}")
    _, gif, download = media[0]  # the selected model's
    d1, d2 = st.columns(2)
    d1.download_button("Download GIF", gif, "interpolation.gif", "image/gif", width="stretch")
    d2.download_button("Download PNG strip", download, "interpolation.png", "image/png", width="stretch")


@st.cache_data(max_entries=32, show_spinner=False)
def interpolation_media(
    _model: training.ConvVAE, folder: str, path_bytes: bytes, label: int | None
) -> tuple[bytes, bytes, bytes]:
    """(strip PNG to show, animated GIF, PNG strip to download) for a path of latents; cached by
    the model folder and the path's bytes, so slider moves elsewhere on the page do not redo it."""
    path = np.frombuffer(path_bytes, np.float32).reshape(-1, _model.config.latent_dim)
    frames = decode_latents(_model, path, label)
    return png_bytes(upscale(strip(frames), 3)), gif_bytes(frames), png_bytes(upscale(strip(frames), 2))
