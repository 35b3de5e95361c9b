"""latent-explorer: drive a VAE's latent vector by hand, see where it lies among the encoded
test set, interpolate and traverse. Layout and wiring only: the work is done in explorer/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

import training
from explorer.atlas import Atlas, AtlasError, load_atlas, place_on_map
from explorer.figures import atlas_figure, selected_rows
from explorer.latent import clamp, interpolate, latent_ranges, sample_prior, traverse
from explorer.models import list_checkpoints
from explorer.params import VIEWS, format_latent, parse_latent, parse_page_state
from explorer.render import decode_latents, gif_bytes, grid, png_bytes, strip, upscale

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
DEFAULT_MODEL = "mnist-z8"
IMAGE_PIXELS = 336  # side of the decoded image as sent (nearest-neighbour upscaled)


# --------------------------------------------------------------------------- cached loaders

@st.cache_resource(max_entries=8, show_spinner="Loading model…")
def get_model(folder: str) -> training.ConvVAE:
    """A model in eval mode; shared by every session, never mutated."""
    return training.load_model(folder, device="cpu")


@st.cache_data(max_entries=8, show_spinner=False)
def get_atlas(folder: str, latent_dim: int) -> Atlas | None:
    return load_atlas(folder, latent_dim)


def atlas_or_none(folder: str, latent_dim: int) -> Atlas | None:
    """The checkpoint's atlas; None when it has none or a broken one (warned about once, on load)."""
    try:
        return get_atlas(folder, latent_dim)
    except AtlasError:
        return None


# --------------------------------------------------------------------------- state helpers

def current_latent(latent_dim: int) -> np.ndarray:
    return np.array([st.session_state[f"z{i + 1}"] for i in range(latent_dim)], np.float32)


def set_latent(z: np.ndarray) -> None:
    """Move the sliders (call before they are drawn, i.e. from a callback)."""
    low, high = st.session_state["ranges"]
    for i, value in enumerate(clamp(z, low, high)):
        st.session_state[f"z{i + 1}"] = min(max(round(float(value), 2), float(low[i])), float(high[i]))


def init_session() -> None:
    """First run of a session: read the URL once, remember warnings to show."""
    if "initialised" in st.session_state:
        return
    names = list_checkpoints(CHECKPOINTS)
    default = DEFAULT_MODEL if DEFAULT_MODEL in names else (names[0] if names else None)
    page = parse_page_state(st.query_params.to_dict(), names, default)
    st.session_state.setdefault("model_choice", page.model)
    st.session_state.setdefault("view", page.view)
    st.session_state.setdefault("url_latent", st.query_params.get("z"))
    st.session_state.setdefault("warnings", page.warnings)
    st.session_state.setdefault("active_folder", None)
    st.session_state.setdefault("rng_seed", 0)
    st.session_state["initialised"] = True


def choose_model() -> tuple[str, training.ConvVAE]:
    """Sidebar picker. A checkpoint that fails to load shows its error and the page stays on
    the previous model."""
    names = list_checkpoints(CHECKPOINTS)
    st.sidebar.header("Model")
    if names:
        st.sidebar.selectbox("Bundled checkpoints", names, key="model_choice")
    custom = st.sidebar.text_input("…or a checkpoint folder on this machine", key="model_path",
                                   placeholder="/path/to/checkpoint")
    wanted = custom.strip() or (str(CHECKPOINTS / st.session_state["model_choice"]) if names else "")
    previous = st.session_state["active_folder"]
    try:
        if not wanted:
            raise training.CheckpointError(f"No checkpoints in {CHECKPOINTS}; train one with `python -m training train`.")
        model = get_model(wanted)
        folder = wanted
    except training.CheckpointError as error:
        st.sidebar.error(str(error))
        if previous is None:
            st.error(f"No model could be loaded: {error}")
            st.stop()
        folder, model = previous, get_model(previous)
    if folder != previous:
        on_model_change(folder, model)
    return folder, model


def on_model_change(folder: str, model: training.ConvVAE) -> None:
    latent_dim = model.config.latent_dim
    try:
        atlas = get_atlas(folder, latent_dim)
    except AtlasError as error:
        st.session_state["warnings"].append(str(error))
        atlas = None
    low, high = latent_ranges(None if atlas is None else atlas.means, latent_dim)
    st.session_state["ranges"] = (low, high)
    st.session_state["active_folder"] = folder
    start = np.clip(np.zeros(latent_dim, np.float32), low, high)
    url_latent = st.session_state.pop("url_latent", None)
    if url_latent is not None:
        parsed, warnings = parse_latent(url_latent, low, high)
        st.session_state["warnings"].extend(warnings)
        if parsed is not None:
            start = parsed
    for key in [k for k in st.session_state if isinstance(k, str) and k[:1] == "z" and k[1:].isdigit()]:
        del st.session_state[key]
    set_latent(start)
    # Start the interpolation between two test images (or the origin and a sample) so the
    # view shows something before the user picks endpoints.
    if atlas is not None and len(atlas) > 1:
        st.session_state["end_a"], st.session_state["end_b"] = clamp(atlas.means[0], low, high), clamp(atlas.means[1], low, high)
    else:
        st.session_state["end_a"] = np.zeros(latent_dim, np.float32)
        st.session_state["end_b"] = clamp(sample_prior(np.random.default_rng(0), latent_dim), low, high)


# --------------------------------------------------------------------------- callbacks

def on_random(latent_dim: int) -> None:
    st.session_state["rng_seed"] += 1
    set_latent(sample_prior(np.random.default_rng(st.session_state["rng_seed"]), latent_dim))


def on_reset(latent_dim: int) -> None:
    set_latent(np.zeros(latent_dim, np.float32))


def on_load_test_image(atlas: Atlas) -> None:
    row = int(np.searchsorted(atlas.index, st.session_state["test_index"]))
    row = min(row, len(atlas) - 1)
    set_latent(atlas.means[row])


def on_map_select(atlas: Atlas) -> None:
    rows = selected_rows(atlas, st.session_state["atlas_map"].selection.points)
    if rows:
        st.session_state["test_index"] = int(atlas.index[rows[0]])
        set_latent(atlas.means[rows[0]])


def on_set_endpoint(end: str, latent_dim: int, atlas: Atlas | None) -> None:
    source = st.session_state[f"source_{end}"]
    if source == "current z":
        z = current_latent(latent_dim)
    elif source == "random sample":
        st.session_state["rng_seed"] += 1
        z = sample_prior(np.random.default_rng(st.session_state["rng_seed"]), latent_dim)
    else:  # a test image, by index
        row = min(int(np.searchsorted(atlas.index, st.session_state[f"index_{end}"])), len(atlas) - 1)
        z = atlas.means[row]
    low, high = st.session_state["ranges"]
    st.session_state[f"end_{end}"] = clamp(z, low, high)


# --------------------------------------------------------------------------- panels

def class_names(model: training.ConvVAE) -> list[str]:
    return list(model.checkpoint_config.get("dataset", {}).get("class_names", []))


def interpolation_latents(latent_dim: int) -> np.ndarray | None:
    if "end_a" not in st.session_state or "end_b" not in st.session_state:
        return None
    return interpolate(st.session_state["end_a"], st.session_state["end_b"],
                       st.session_state.get("steps", 10), st.session_state.get("method", "slerp"))


@st.fragment
def workbench(folder: str, model: training.ConvVAE) -> None:
    """Sliders, the decoded image, the map and the view below: one fragment, so a slider
    moves the image, the map marker and the views without rerunning the sidebar."""
    latent_dim = model.config.latent_dim
    low, high = st.session_state["ranges"]
    atlas = atlas_or_none(folder, latent_dim)

    left, middle, right = st.columns([5, 5, 9], gap="medium")
    with middle:
        for i in range(latent_dim):
            st.slider(f"z{i + 1}", float(low[i]), float(high[i]), key=f"z{i + 1}", step=0.01, format="%.2f")
    z = current_latent(latent_dim)
    with left:
        image = decode_latents(model, z)[0]
        st.image(png_bytes(upscale(image, max(1, IMAGE_PIXELS // image.shape[0]))),
                 caption="decoder(z)", width="stretch", output_format="PNG")
        b1, b2 = st.columns(2)
        b1.button("Random", on_click=on_random, args=(latent_dim,), width="stretch",
                  help="Draw z from the prior N(0, I)")
        b2.button("Origin", on_click=on_reset, args=(latent_dim,), width="stretch", help="Set z = 0")
        if atlas is not None:
            c1, c2 = st.columns([3, 2], vertical_alignment="bottom")
            c1.number_input("Test image #", 0, int(atlas.index.max()), key="test_index", step=1)
            c2.button("Encode it", on_click=on_load_test_image, args=(atlas,), width="stretch",
                      help="Set z to the encoder's mean for this test image")

    path = interpolation_latents(latent_dim)
    with right:
        if atlas is None:
            st.info("This checkpoint has no atlas yet. Build one with "
                    f"`python -m training atlas {folder}` to see the encoded test set here.")
        else:
            marker = place_on_map(atlas, z)
            path_xy = None if path is None else np.array([place_on_map(atlas, p) for p in path])
            st.plotly_chart(atlas_figure(atlas, class_names(model), marker=marker, path=path_xy),
                            key="atlas_map", on_select=lambda: on_map_select(atlas),
                            selection_mode="points", width="stretch")
            st.caption(f"{len(atlas):,} encoded test images, laid out by UMAP. Click a point to load its "
                       "latent; the star is the current z, placed among its nearest neighbours.")

    # the view is None while the user has deselected both views: keep the last one in the link
    shared = {"model": Path(folder).name, "z": format_latent(z)}
    if st.session_state["view"] in VIEWS:
        shared["view"] = st.session_state["view"]
    st.query_params.update(shared)
    st.divider()
    view = st.segmented_control("View", VIEWS, key="view", format_func=str.capitalize)
    if view == "interpolate":
        interpolation_view(latent_dim, atlas, path, model)
    elif view == "traverse":
        traversal_view(z, model)


def interpolation_view(latent_dim: int, atlas: Atlas | None, path: np.ndarray | None,
                       model: training.ConvVAE) -> None:
    sources = ["current z", "random sample"] + (["test image"] if atlas is not None else [])
    columns = st.columns(4, vertical_alignment="bottom")
    for end, column in zip(("a", "b"), columns[:2]):
        with column:
            st.selectbox(f"Endpoint {end.upper()}", sources, key=f"source_{end}")
            if st.session_state[f"source_{end}"] == "test image":
                st.number_input("test image #", 0, int(atlas.index.max()), key=f"index_{end}",
                                value=0 if end == "a" else 1)
            st.button(f"Set {end.upper()}", key=f"set_{end}", on_click=on_set_endpoint,
                      args=(end, latent_dim, atlas), width="stretch")
    with columns[2]:
        st.slider("Steps", 3, 24, 10, key="steps")
    with columns[3]:
        st.radio("Path", ["slerp", "lerp"], key="method", horizontal=True)
    if path is None:
        st.caption("Set both endpoints to see the decoded path (and the path on the map).")
        return
    shown, gif, download = interpolation_media(model, st.session_state["active_folder"], path.tobytes())
    st.image(shown, caption=f"{len(path)} steps, {st.session_state['method']}")
    d1, d2 = st.columns(2)
    d1.download_button("Download GIF", gif, "interpolation.gif", "image/gif", width="stretch")
    d2.download_button("Download PNG strip", download, "interpolation.png", "image/png", width="stretch")


@st.cache_data(max_entries=32, show_spinner=False)
def interpolation_media(_model: training.ConvVAE, folder: str, path_bytes: bytes) -> tuple[bytes, bytes, bytes]:
    """(strip PNG to show, animated GIF, PNG strip to download) for a path of latents; cached by
    the model folder and the path's bytes, so slider moves elsewhere on the page do not redo it."""
    path = np.frombuffer(path_bytes, np.float32).reshape(-1, _model.config.latent_dim)
    frames = decode_latents(_model, path)
    return png_bytes(upscale(strip(frames), 3)), gif_bytes(frames), png_bytes(upscale(strip(frames), 2))


def traversal_view(z: np.ndarray, model: training.ConvVAE) -> None:
    columns = st.slider("Columns", 5, 15, 9, key="traverse_columns")
    low, high = st.session_state["ranges"]
    latents = traverse(z, low, high, columns)  # (D, K, D)
    d, k = latents.shape[:2]
    images = decode_latents(model, latents.reshape(d * k, -1))
    sheet = grid(images.reshape(d, k, *images.shape[1:]))
    st.image(png_bytes(upscale(sheet, 2)),
             caption="Row i sweeps zi from its low to its high end; the other dimensions stay at the current z.")


# --------------------------------------------------------------------------- page

def main() -> None:
    st.set_page_config(page_title="latent-explorer", page_icon="🧭", layout="wide")
    init_session()
    folder, model = choose_model()
    metrics = training.read_metrics(folder)
    with st.sidebar:
        st.caption(f"{Path(folder).name}: latent size {model.config.latent_dim}, "
                   f"{'×'.join(map(str, model.config.image_shape))} images")
        if metrics:
            st.caption(f"test MSE {metrics.get('mse_per_pixel', float('nan')):.4f} · "
                       f"kNN-5 {metrics.get('knn5_accuracy', float('nan')):.3f} · "
                       f"−ELBO {metrics.get('neg_elbo_nats', float('nan')):.1f} nats")
    st.title("latent-explorer")
    for warning in st.session_state["warnings"]:
        st.warning(warning)
    workbench(folder, model)


main()
