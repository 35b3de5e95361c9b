"""latent-explorer: drive a VAE's latent vector by hand, see where it lies among the encoded
test set, interpolate and traverse. Layout and wiring only: the work is done in explorer/."""

from __future__ import annotations

import hashlib
import os
import shlex
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

import training
from explorer.anomaly import (
    MAX_UPLOADS,
    ScoredImage,
    percentile_among_test_set,
    ranking,
    ranking_csv,
    ranking_order,
    score_images,
)
from explorer.atlas import Atlas, AtlasError, describe_point, load_atlas, nearest_training, place_on_map
from explorer.concept import (
    SELECTED,
    Concept,
    concept_from_groups,
    format_concept,
    group_choices,
    group_rows,
    parse_concept,
)
from explorer.figures import MAP_HEIGHT, atlas_figure, history_figure, selected_rows, sharpen_history_figure
from explorer.history import history_csv, run_summary, sharpen_command, sharpen_summary
from explorer.latent import (
    clamp,
    inactive_dimensions,
    interpolate,
    latent_ranges,
    sample_prior,
    snap_latent,
    traverse,
)
from explorer.live import (
    browser_bundle,
    cached_decoder_onnx,
    compare_payload,
    frontend_script,
    latent_from_browser,
    live_payload,
    principal_plane,
    thumbnails_bundle,
)
from explorer.models import available_checkpoints, hide_paths, public_mode, sharpened_pair
from explorer.neighbours import TrainingImages, find_training_images
from explorer.params import VIEWS, format_latent, parse_latent, parse_page_state
from explorer.preprocess import data_url_bytes, read_image_bytes
from explorer.render import decode_latents, gif_bytes, grid, png_bytes, strip, to_uint8, upscale
from explorer.state import PageState
from training.checkpoint import HISTORY, load_likelihood_model
from training.commands.train import train_command
from training.data import default_data_root
from training.images import model_input, uses_digit_recipe
from training.sampler import MixtureSampler, load_sampler

HERE = Path(__file__).resolve().parent
CHECKPOINTS = HERE / "checkpoints"
# the page opens on the first of these it has: the sharpened decoder, else its VAE
DEFAULT_MODELS = ("mnist-z8-sharp", "mnist-z8")
IMAGE_PIXELS = 336  # side of the decoded image as sent (nearest-neighbour upscaled)
ORT_ASSETS = "app/static/ort/"  # vendored onnxruntime-web, served by server.enableStaticServing
# the session's state, every key declared in explorer/state.py (a view of st.session_state)
state = PageState(st.session_state)


# --------------------------------------------------------------------------- cached loaders


@st.cache_resource(max_entries=8, show_spinner="Loading model…")
def get_model(folder: str) -> training.ConvVAE:
    """A model in eval mode; shared by every session, never mutated."""
    return training.load_model(folder, device="cpu")


@st.cache_resource(max_entries=8, show_spinner="Loading model…")
def get_likelihood_model(folder: str) -> training.ConvVAE:
    """The model anomaly scores use: the checkpoint's own, or a sharpened one's encoder with its
    parent's decoder (training.checkpoint.load_likelihood_model); shared, never mutated."""
    return load_likelihood_model(folder, device="cpu")


# What every session reads and none writes is a cache_resource: one object shared, where
# cache_data would unpickle a copy of its megabytes on every run of every session.
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
        st.sidebar.warning(say(str(error)))
        return None


def atlas_or_none(folder: str, latent_dim: int) -> Atlas | None:
    """The checkpoint's atlas; None when it has none or a broken one (warned about once, on load)."""
    try:
        return get_atlas(folder, latent_dim)
    except AtlasError:
        return None


@st.cache_resource
def live_components() -> tuple:
    """The in-browser decoder's two components (registered once per process): one carries the
    ONNX decoder (sent to the browser once per model), one the controls (small JSON per run)."""
    script = frontend_script(HERE / "frontend")
    css = (HERE / "frontend" / "controls.css").read_text()
    model = st.components.v2.component("latent_explorer.decoder_model", js=script)
    controls = st.components.v2.component("latent_explorer.live_latent", js=script, css=css)
    return model, controls


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
    """(bundle id, bytes): the folder's decoder as ONNX and its atlas, for the browser."""
    atlas = atlas_or_none(folder, _model.config.latent_dim)
    onnx_bytes = cached_decoder_onnx(_model, default_data_root() / "onnx")
    if atlas is None:
        return browser_bundle(onnx_bytes)
    return browser_bundle(onnx_bytes, atlas.means, atlas.embedding)


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


@st.cache_resource(max_entries=16, show_spinner=False)
def map_figure(
    _atlas: Atlas, folder: str, names: tuple[str, ...], marker: tuple[float, float] | None, path_bytes: bytes | None
) -> go.Figure:
    """The map's figure, built once per model, star and path (P, 2) float64 bytes: a release of
    the browser's sliders changes neither (the browser draws the star), so the 10,000 points'
    traces are not built again. Shared by every session, never mutated (plotly_chart copies)."""
    path = None if path_bytes is None else np.frombuffer(path_bytes, np.float64).reshape(-1, 2)
    return atlas_figure(_atlas, list(names), marker=marker, path=path)


@st.cache_data(max_entries=8, show_spinner=False)
def pad_plane_json(folder: str, latent_dim: int) -> dict | None:
    atlas = atlas_or_none(folder, latent_dim)
    return None if atlas is None else principal_plane(atlas.means).to_json()


# --------------------------------------------------------------------------- public mode


def public() -> bool:
    """$LATENT_EXPLORER_PUBLIC=1: the page for visitors (no path field, no server path shown)."""
    return public_mode(os.environ)


def checkpoints() -> dict[str, Path]:
    """The picker's {name: folder}: the bundled checkpoints and $LATENT_EXPLORER_CHECKPOINTS's."""
    return available_checkpoints(CHECKPOINTS, os.environ.get("LATENT_EXPLORER_CHECKPOINTS", ""))


def say(text: str) -> str:
    """TEXT as the page shows it: in public mode, without any server path."""
    return hide_paths(text, checkpoints()) if public() else text


# --------------------------------------------------------------------------- state helpers


def shell_path(folder: str) -> str:
    """FOLDER as one would type it in a shell at the project's root (where `make app` runs); in
    public mode a folder outside the project is not named."""
    path = Path(folder).resolve()
    return shlex.quote(str(path.relative_to(HERE)) if path.is_relative_to(HERE) else say(str(path)))


def current_latent() -> np.ndarray:
    """The page's latent, (D,) float32: the one value every panel reads."""
    return state.latent.copy()


def chosen_label(model: training.ConvVAE) -> int | None:
    """The class a conditional model decodes with (the page's class picker); None otherwise."""
    # a segmented control can be unselected (None): the first class then
    return int(state.get("class_label") or 0) if model.config.num_classes else None


def init_session() -> None:
    """First run of a session: read the URL once, remember warnings to show."""
    if state.has("initialised"):
        return
    names = list(checkpoints())
    default = next((name for name in DEFAULT_MODELS if name in names), names[0] if names else None)
    page = parse_page_state(st.query_params.to_dict(), names, default)
    defaults = {
        "model_choice": page.model,
        "view": page.view,
        "url_latent": st.query_params.get("z"),
        "url_concept": st.query_params.get("concept"),
        "warnings": page.warnings,
        "active_folder": None,
        "rng_seed": 0,
        "live_decoding": True,
        "live_unavailable": None,
        "first_image_shown": False,
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
        st.selectbox("Checkpoints" if public() else "Bundled checkpoints", list(available), key="model_choice")
    if not public():  # a visitor of a shared server chooses among the listed ones only
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
    elif not public():
        state.model_path = str(wanted)


def choose_model(available: dict[str, Path], picker: object) -> tuple[str, training.ConvVAE]:
    """The model the picker names among AVAILABLE. Its widgets are drawn into PICKER (a sidebar
    container) after the workbench, so the first image does not wait for them. A checkpoint that
    fails to load shows its error and the page stays on the previous model."""
    typed = "" if public() else (state.get("model_path") or "").strip()
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
        st.sidebar.error(say(str(error)))
        if previous is None:
            with picker:
                model_picker(available, None)
            st.error(say(f"No model could be loaded: {error}"))
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
    state.concept = None
    state.drop("concept_from")
    state.drop("concept_to")
    url_concept = state.get("url_concept")
    state.drop("url_concept")
    if url_concept is not None:
        state.concept, warnings = parse_concept(url_concept, low, high)
        state.warnings.extend(warnings)
    # Start the interpolation between two test images (or the origin and a sample) so the
    # view shows something before the user picks endpoints.
    if atlas is not None and len(atlas) > 1:
        state.end_a, state.end_b = (
            clamp(atlas.means[0], low, high),
            clamp(atlas.means[1], low, high),
        )
        names = class_names(model)
        state.end_a_label = describe_point(atlas, 0, names)
        state.end_b_label = describe_point(atlas, 1, names)
    else:
        state.end_a = np.zeros(latent_dim, np.float32)
        state.end_b = clamp(sample_prior(np.random.default_rng(0), latent_dim), low, high)
        state.end_a_label, state.end_b_label = "the origin", "a random sample"


def decoder_caption(folder: str, model: training.ConvVAE) -> str:
    kind = "sharpened decoder" if "sharpen" in model.checkpoint_config else "VAE decoder"
    return f"{kind} · {Path(folder).name}"


def shown_decoders(
    folder: str, model: training.ConvVAE, pair: tuple[Path, Path] | None
) -> list[tuple[str, training.ConvVAE]]:
    """(folder, model) of each decoder the page draws z with: the selected model's, and with
    Compare on, the other of its sharpened PAIR (explorer.models.sharpened_pair; the same
    latent space)."""
    if pair is None or not state.get("compare", False):
        return [(folder, model)]
    other = str(pair[1] if Path(pair[0]).resolve() == Path(folder).resolve() else pair[0])
    try:
        return [(folder, model), (other, get_model(other))]
    except training.CheckpointError as error:
        st.warning(say(f"The compared decoder cannot be loaded: {error}"))
        return [(folder, model)]


# --------------------------------------------------------------------------- callbacks


def on_random(latent_dim: int) -> None:
    state.rng_seed += 1
    state.set_latent(sample_prior(np.random.default_rng(state.rng_seed), latent_dim))


def on_random_fitted(sampler: MixtureSampler) -> None:
    state.rng_seed += 1
    state.set_latent(sampler.sample(np.random.default_rng(state.rng_seed), 1)[0])


def on_reset(latent_dim: int) -> None:
    state.set_latent(np.zeros(latent_dim, np.float32))


def load_atlas_row(atlas: Atlas, row: int) -> None:
    """A test image's latent into the controls; a conditional model also takes its class (the
    mean was encoded with it)."""
    if state.has("class_label"):
        state.class_label = int(atlas.labels[row])
    state.set_latent(atlas.means[row])


def on_load_test_image(atlas: Atlas) -> None:
    row = int(np.searchsorted(atlas.index, state.test_index))
    load_atlas_row(atlas, min(row, len(atlas) - 1))


def on_map_select(atlas: Atlas) -> None:
    """A click loads the point's latent; a box or lasso selection is kept as a group for a
    concept direction."""
    selection = state.atlas_map.selection
    rows = selected_rows(atlas, selection.points)
    if selection.get("box") or selection.get("lasso"):
        state.map_selection = rows
    elif rows:
        state.test_index = int(atlas.index[rows[0]])
        load_atlas_row(atlas, rows[0])


def on_concept_groups(atlas: Atlas, names: list[str]) -> None:
    """A concept group was chosen: the direction between the two, once both are chosen."""
    choices = state.get("concept_from"), state.get("concept_to")
    state.concept = None
    if None in choices:
        return
    if SELECTED in choices and not state.map_selection:
        state.warnings.append(
            "No points are selected on the map: pick the box or lasso tool above the map, select, then choose again."
        )
        return
    a_rows, b_rows = (group_rows(atlas, choice, names, state.map_selection) for choice in choices)
    try:
        state.concept = concept_from_groups(atlas, a_rows, b_rows, f"{choices[0]} → {choices[1]}")
    except ValueError as error:
        state.warnings.append(f"No concept direction: {error}.")


def on_concept_clear() -> None:
    state.concept = None
    state.concept_from = None
    state.concept_to = None


def on_concept_slider(concept: Concept) -> None:
    """The server-side concept slider moved: z along the concept's direction."""
    state.set_latent(concept.move(state.latent, state.concept_t))


def on_slider(latent_dim: int) -> None:
    """A server-side slider moved: the sliders are the latent (no revision: nothing to move)."""
    state.latent = np.array([state.slider(i) for i in range(latent_dim)], np.float32)


def on_live_latent() -> None:
    """The browser's controls were released: take their latent, checked and clamped."""
    low, high = state.ranges
    z = latent_from_browser(state.live_latent.get("latent"), low, high)
    if z is not None:
        state.latent = z


def on_live_shown() -> None:
    """The browser drew its first image: the map goes to it on this rerun (see workbench)."""
    state.first_image_shown = True


def on_live_status() -> None:
    """The browser could not start its decoder (no WebAssembly, …): use the server's sliders."""
    status = state.live_latent.get("status")
    if isinstance(status, str) and status.startswith("unavailable"):
        state.live_unavailable = status.partition(": ")[2][:200] or "unknown reason"


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


# --------------------------------------------------------------------------- panels


def class_names(model: training.ConvVAE) -> list[str]:
    """The checkpoint's class names; a conditional model without them gets its class numbers."""
    names = list(model.checkpoint_config.get("dataset", {}).get("class_names", []))
    return names or [str(k) for k in range(model.config.num_classes)]


def interpolation_latents(latent_dim: int) -> np.ndarray | None:
    if not (state.has("end_a") and state.has("end_b")):
        return None
    return interpolate(
        state.end_a,
        state.end_b,
        state.get("steps", 10),
        state.get("method", "slerp"),
    )


@st.fragment
def workbench(folder: str, model: training.ConvVAE) -> None:
    """Sliders, the decoded image, the map and the view below: one fragment, so a slider
    moves the image, the map marker and the views without rerunning the sidebar."""
    latent_dim = model.config.latent_dim
    low, high = state.ranges
    atlas = atlas_or_none(folder, latent_dim)

    if model.config.num_classes:
        names = class_names(model)
        if state.get("class_label") not in range(model.config.num_classes):
            state.class_label = 0
        st.segmented_control(
            "Class (this model is conditional: the same z, drawn as the class you pick)",
            list(range(model.config.num_classes)),
            key="class_label",
            format_func=lambda k: names[k] if k < len(names) else str(k),
        )
    pair = sharpened_pair(folder, model.checkpoint_config)
    if pair is not None:
        sharp = "sharpen" in model.checkpoint_config
        st.toggle(
            f"Compare with {'the VAE decoder' if sharp else 'the sharpened decoder'} "
            f"({Path(pair[0 if sharp else 1]).name})",
            key="compare",
            help="The same z through both decoders, side by side: the sharpened one was fine-tuned adversarially "
            "on this encoder, so z means the same in both.",
        )
    decoders = shown_decoders(folder, model, pair)
    live = state.live_decoding and state.live_unavailable is None
    if live:
        live_controls(decoders)
    else:
        if state.live_decoding:
            st.warning(
                f"Live decoding is off: {state.live_unavailable}. "
                "The sliders below decode on the server, once per release."
            )
        server_controls(decoders)
    sampler = get_sampler(folder, latent_dim)
    # A wrapping row of content-sized buttons: in a narrow column (a 1024-px screen with the
    # sidebar open) fixed columns cut their labels to "Ran…", "Enc…".
    with st.container(horizontal=True, vertical_alignment="bottom", gap="small", key="latent_buttons"):
        st.button("Random", on_click=on_random, args=(latent_dim,), help="Draw z from the prior N(0, I)")
        if sampler is not None:
            st.button(
                "Random (fitted)",
                on_click=on_random_fitted,
                args=(sampler,),
                help="Draw z from the Gaussian mixture fitted to the training set's encoded means: "
                "where the data are, so fewer blurred in-between images than the prior gives",
            )
        st.button("Origin", on_click=on_reset, args=(latent_dim,), help="Set z = 0")
        if atlas is not None:
            st.number_input("Test image #", 0, int(atlas.index.max()), key="test_index", step=1, width=150)
            st.button(
                "Encode it",
                on_click=on_load_test_image,
                args=(atlas,),
                help="Set z to the encoder's mean for this test image",
            )
    z = current_latent()

    path = interpolation_latents(latent_dim)
    if atlas is None:
        st.info(
            "This checkpoint has no atlas yet. Build one with "
            f"`python -m training atlas {shell_path(folder)}` to see the encoded test set here."
        )
    else:
        # Live, the browser draws the star over the map as z moves (and the chart, unchanged,
        # is not re-sent); the server's sliders need it in the figure.
        marker = None if live else place_on_map(atlas, z)
        # the path belongs to the Interpolate view; under the others it would be a stray line
        show_path = path is not None and state.view == "interpolate"
        path_xy = np.array([place_on_map(atlas, p) for p in path]) if show_path else None
        if live and not state.first_image_shown:
            # Plotly's script holds the browser's main thread for about a second: the map comes
            # on the rerun the controls ask for once their first image is drawn (on_live_shown).
            with st.container(height=MAP_HEIGHT, border=False, key="atlas_map_pending"):
                st.caption("Drawing the map…")
        else:
            st.plotly_chart(
                map_figure(
                    atlas,
                    folder,
                    tuple(class_names(model)),
                    None if marker is None else tuple(marker),
                    None if path_xy is None else path_xy.tobytes(),
                ),
                key="atlas_map",
                on_select=lambda: on_map_select(atlas),
                selection_mode=("points", "box", "lasso"),
                width="stretch",
                theme=None,
            )  # the figure's own colours: Streamlit's dark theme greys its legend out
        st.caption(
            f"{len(atlas):,} encoded test images, laid out by UMAP. Point at the map to decode "
            "where you point, click to keep it; the star is the current z, placed among its nearest neighbours."
            if live
            else f"{len(atlas):,} encoded test images, laid out by UMAP. Click a point to load its "
            "latent; the star is the current z, placed among its nearest neighbours."
        )
        concept_controls(atlas, class_names(model), live)
        nearest_training_view(folder, model, atlas, z)

    # the view is None while the user has deselected every view: keep the last one in the link
    shared = {"model": Path(folder).name, "z": format_latent(z)}
    if state.view in VIEWS:
        shared["view"] = state.view
    if state.concept is not None:
        shared["concept"] = format_concept(state.concept)
    elif "concept" in st.query_params:
        del st.query_params["concept"]
    st.query_params.update(shared)
    st.divider()
    view = st.segmented_control("View", VIEWS, key="view", format_func=str.capitalize)
    if view == "interpolate":
        interpolation_view(latent_dim, atlas, path, decoders)
    elif view == "traverse":
        traversal_view(z, decoders)
    elif view == "anomaly":
        anomaly_view(model, atlas)
    elif view == "training":
        training_view(folder, model)


def concept_controls(atlas: Atlas, names: list[str], live: bool) -> None:
    """Two groups, From and To, give a concept direction (explorer/concept.py): a class each,
    or the points selected on the map. Live, its slider is under the 2-D pad."""
    choices = group_choices(names)
    with st.container(horizontal=True, vertical_alignment="bottom", gap="small", key="concept_row"):
        for end, label in (("concept_from", "Concept direction from"), ("concept_to", "to")):
            st.selectbox(
                label,
                choices,
                index=None,
                key=end,
                placeholder="a class, or selected points",
                on_change=on_concept_groups,
                args=(atlas, names),
                width=220,
                help=f"Select points with the map's box or lasso tool, then choose '{SELECTED}' to make them a group.",
            )
        if state.concept is not None:
            st.button("Clear", on_click=on_concept_clear, key="concept_clear")
    concept = state.concept
    if concept is None:
        return
    if live:
        st.caption(
            f"Concept {concept.name}: its slider t is under the 2-D pad (0 at the first group's mean, 1 at the "
            "second's), with every test image's t drawn beneath it."
        )
        return
    t = concept.projections(atlas.means)
    low, high = float(min(t.min(), 0.0)), float(max(t.max(), 1.0))
    state.concept_t = float(np.clip(concept.position(state.latent), low, high))
    st.slider(
        f"Concept {concept.name} (t: 0 at the first group's mean, 1 at the second's)",
        low,
        high,
        key="concept_t",
        step=(high - low) / 200,
        on_change=on_concept_slider,
        args=(concept,),
    )


def nearest_training_view(folder: str, model: training.ConvVAE, atlas: Atlas, z: np.ndarray) -> None:
    """The 8 training images whose encoder means are nearest z: does a sample copy or compose?"""
    if atlas.train_means is None:
        return
    if not st.toggle(
        "Nearest training images",
        key="show_neighbours",
        help="The training images whose encoded means are nearest the current z, with their latent distances: "
        "one very near means z decodes close to a copy of it.",
    ):
        return
    rows, distances = nearest_training(atlas, z)
    try:
        source = get_training_images(folder, model, os.environ.get("LATENT_EXPLORER_DATA"))
        images = to_uint8(source.images(rows))  # (k, H, W, C)
    except training.DataError as error:
        st.info(
            say(
                f"The training images are not on this machine ({error}) Their rows in the training split and "
                f"latent distances: {', '.join(f'#{r} ({d:.2f})' for r, d in zip(rows, distances))}."
            )
        )
        return
    with st.container(horizontal=True, gap="small", key="neighbours"):
        for row, distance, image in zip(rows, distances, images):
            st.image(
                png_bytes(upscale(image, max(1, 84 // image.shape[0]))),
                caption=f"#{row} · d {distance:.2f}",
                width=84,
                output_format="PNG",
            )
    st.caption(
        "Training images (rows of the training split) nearest the current z in latent space, nearest first, "
        "with their distances; the typical distance between neighbouring test images is "
        f"{typical_spacing(folder, model.config.latent_dim):.2f}."
    )


@st.cache_data(max_entries=8, show_spinner=False)
def typical_spacing(folder: str, latent_dim: int) -> float:
    """The median latent distance from a test image's mean to its nearest training mean."""
    atlas = atlas_or_none(folder, latent_dim)
    sample = atlas.means[:: max(1, len(atlas) // 500)]
    return float(np.median([nearest_training(atlas, z, 1)[1][0] for z in sample]))


@st.cache_data(max_entries=8, show_spinner=False)
def training_history(folder: str, modified: float) -> list[dict]:
    """The checkpoint's history.jsonl rows, cached until the file changes (MODIFIED, its mtime:
    a run still training into the folder adds a row at each evaluation)."""
    return training.read_history(folder)


def training_view(folder: str, model: training.ConvVAE) -> None:
    """How the model was trained: its recipe in a sentence, the command that trains it again,
    and its history's curves (test figures at each evaluation, the training loss between)."""
    config = model.checkpoint_config
    if "sharpen" in config:
        sharpened_view(folder, config)
        return
    if "train" in config:
        st.markdown(run_summary(config, training.read_metrics(folder)))
        st.code(say(train_command(config, f"runs/{Path(folder).name}")), language="bash", wrap_lines=True)
    else:  # saved by save_model from Python with the model's config alone
        st.info("This checkpoint does not record how it was trained (its config.json has no train section).")
    history_path = Path(folder) / HISTORY
    if not history_path.is_file():
        st.info(
            "This checkpoint has no training history: it was trained before `python -m training train` "
            "kept one (history.jsonl, a line per evaluation). Train it again to see its curves."
        )
        return
    try:
        rows = training_history(folder, history_path.stat().st_mtime)
    except training.CheckpointError as error:
        st.warning(say(str(error)))
        return
    if not rows:
        st.info("The training history is empty.")
        return
    st.plotly_chart(history_figure(rows), key="history_chart", width="stretch")
    last = rows[-1]
    st.caption(
        f"{len(rows)} evaluations over {round(last['epoch'], 2):g} epochs. The training loss is each point's mean over "
        "the steps since the previous one, with one posterior sample per image, as trained (β-weighted); "
        "the test −ELBO also takes one sample, the MSE decodes the means."
    )
    st.download_button("Download the history (CSV)", history_csv(rows), f"{Path(folder).name}-history.csv", "text/csv")


def sharpened_view(folder: str, config: dict) -> None:
    """How a sharpened decoder was made: its recipe in a sentence, the command, its curves."""
    st.markdown(sharpen_summary(config, training.read_metrics(folder)))
    st.code(say(sharpen_command(config, f"runs/{Path(folder).name}")), language="bash", wrap_lines=True)
    history_path = Path(folder) / HISTORY
    try:
        rows = training_history(folder, history_path.stat().st_mtime) if history_path.is_file() else []
    except training.CheckpointError as error:
        st.warning(say(str(error)))
        return
    if not rows:
        st.info("This checkpoint has no sharpening history (history.jsonl).")
        return
    st.plotly_chart(sharpen_history_figure(rows), key="history_chart", width="stretch")
    st.caption(
        f"{len(rows)} evaluations over {rows[-1]['step']:,} steps. Each loss is its mean over the steps since the "
        "previous point; the test MSE decodes the encoder's means, as for the VAE."
    )
    st.download_button("Download the history (CSV)", history_csv(rows), f"{Path(folder).name}-history.csv", "text/csv")


def live_controls(decoders: list[tuple[str, training.ConvVAE]]) -> None:
    """Sliders z1…zD, the decoded image (beside it the compared decoder's) and a 2-D pad,
    decoded in the browser while dragging."""
    (folder, model), compared = decoders[0], decoders[1:]
    model_component, controls_component = live_components()
    bundle_id, bundle = browser_data(model, folder)
    thumbnails = browser_thumbnails(folder, model.config.latent_dim)
    compare, other_bundle = None, None
    for other_folder, other in compared:  # its decoder too goes to the browser once per model
        other_id, other_bundle = browser_data(other, other_folder)
        image = png_bytes(decode_latents(other, state.latent, chosen_label(other))[0])
        compare = compare_payload(other_id, decoder_caption(other_folder, other), image)
    low, high = state.ranges
    payload = live_payload(
        bundle_id,
        model.config.image_shape,
        state.latent,
        state.latent_revision,
        low,
        high,
        pad_plane_json(folder, model.config.latent_dim),
        browser_asset_url(),
        image_png=png_bytes(decode_latents(model, state.latent, chosen_label(model))[0]),
        num_classes=model.config.num_classes,
        label=chosen_label(model) or 0,
        unused=state.inactive,
        caption=decoder_caption(folder, model) if compared else "",
        compare=compare,
        concept=None if state.concept is None else state.concept.to_json(),
        thumbnails_id=None if thumbnails is None else thumbnails[0],
    )
    controls_component(
        data=payload,
        key="live_latent",
        default={"latent": None, "status": None, "shown": None},
        on_latent_change=on_live_latent,
        on_status_change=on_live_status,
        on_shown_change=on_live_shown,
    )
    # the bundles after the controls, which draw the server's image while they travel
    model_component(data=bundle, key="decoder_model", height=1)
    if other_bundle is not None:
        model_component(data=other_bundle, key="decoder_model_compare", height=1)
    if thumbnails is not None:
        model_component(data=thumbnails[1], key="atlas_thumbnails", height=1)
    st.caption(
        "Decoded in your browser as you drag. The pad walks z across a plane: the two "
        "principal directions of the encoded test set, or any two dimensions. Click a value to type it."
    )


def server_controls(decoders: list[tuple[str, training.ConvVAE]]) -> None:
    """The fallback: Streamlit sliders, decoded on the server when a slider is released."""
    model = decoders[0][1]
    latent_dim = model.config.latent_dim
    low, high = state.ranges
    image_column, slider_column, _ = st.columns([3, 4, 3])
    with slider_column:
        # Move the sliders only when Python set the latent: writing a widget's value on every
        # run would push a stale value back into a slider the user is still stepping.
        stale = state.get("slider_revision") != state.latent_revision
        # on the grid in float64: float32 → float64 can land a hair outside the bounds, which the slider refuses
        shown = snap_latent(state.latent, low, high)
        for i in range(latent_dim):
            lowest, highest = float(low[i]), float(high[i])
            if stale or state.slider(i) is None:
                state.set_slider(i, float(shown[i]))
            unused = i in state.inactive
            st.slider(
                f"z{i + 1}" + (" (unused)" if unused else ""),
                lowest,
                highest,
                key=state.slider_key(i),
                step=0.01,
                format="%.2f",
                on_change=on_slider,
                args=(latent_dim,),
                help="This model leaves it unused: the decoder ignores it." if unused else None,
            )
        state.slider_revision = state.latent_revision
    with image_column:
        for folder, decoder in decoders:
            image = decode_latents(decoder, state.latent, chosen_label(decoder))[0]
            st.image(
                png_bytes(upscale(image, max(1, IMAGE_PIXELS // image.shape[0]))),
                caption=decoder_caption(folder, decoder) if len(decoders) > 1 else "decoder(z)",
                width="stretch",
                output_format="PNG",
            )


def browser_asset_url() -> str:
    """Absolute path of the vendored onnxruntime-web files, under the server's base path."""
    base = str(st.get_option("server.baseUrlPath") or "").strip("/")
    return f"/{base}/{ORT_ASSETS}" if base else f"/{ORT_ASSETS}"


def interpolation_view(
    latent_dim: int, atlas: Atlas | None, path: np.ndarray | None, decoders: list[tuple[str, training.ConvVAE]]
) -> None:
    model = decoders[0][1]
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
                args=(end, latent_dim, atlas, class_names(model)),
                width="stretch",
            )
    with columns[2]:
        st.slider("Steps", 3, 24, 10, key="steps")
    with columns[3]:
        st.radio("Path", ["slerp", "lerp"], key="method", horizontal=True)
    if path is None:
        st.caption("Set both endpoints to see the decoded path (and the path on the map).")
        return
    # what A and B are now: the selectors above say what "Set" would take, not what was set
    ends = f"{state.get('end_a_label', 'A')} → {state.get('end_b_label', 'B')}"
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


def traversal_view(z: np.ndarray, decoders: list[tuple[str, training.ConvVAE]]) -> None:
    columns = st.slider("Columns", 5, 15, 9, key="traverse_columns")
    low, high = state.ranges
    latents = traverse(z, low, high, columns)  # (D, K, D)
    d, k = latents.shape[:2]
    unused = state.inactive
    for folder, decoder in decoders:  # one grid per decoder, on the same latents
        images = decode_latents(decoder, latents.reshape(d * k, -1), chosen_label(decoder))
        sheet = grid(images.reshape(d, k, *images.shape[1:]))
        which = f"{decoder_caption(folder, decoder)}: " if len(decoders) > 1 else ""
        st.image(
            png_bytes(upscale(sheet, 2)),
            caption=f"{which}Row i sweeps zi from its low to its high end; the other dimensions stay at the current z."
            + (f" {unused_latents_sentence(unused, d)}" if unused else ""),
        )


def unused_latents_sentence(inactive: list[int], latent_dim: int) -> str:
    """'7 of 8 latents in use: z7 is not.' for INACTIVE [6] (0-based indices)."""
    names = ", ".join(f"z{i + 1}" for i in inactive)
    return (
        f"{latent_dim - len(inactive)} of {latent_dim} latents in use: {names} "
        f"{'is' if len(inactive) == 1 else 'are'} not."
    )


def anomaly_items(mnist: bool) -> tuple[list[tuple[str, object, str]], bool]:
    """The images the anomaly view scores, from its widgets' state: [(name, data, cache key)]
    and whether they are the pad's drawing (else uploads)."""
    if state.get("anomaly_source", "draw" if mnist else "upload") == "draw":
        drawing = (state.get("sketch") or {}).get("drawing")
        key = hashlib.sha256(repr(drawing).encode()).hexdigest()
        return ([("the drawing", drawing, key)] if drawing else []), True
    # each upload's id (stable across reruns) keys the cached decoding, not its bytes
    return [(upload.name, upload, upload.file_id) for upload in state.get("anomaly_upload") or []], False


def scored_items(
    model: training.ConvVAE, items: list[tuple[str, object, str]], drawn: bool
) -> tuple[list[str], list[np.ndarray], list[ScoredImage], list[tuple[str, str]]]:
    """ITEMS prepared as the model's inputs and scored: the usable ones' names, inputs and
    scores, and ("error" or "info", sentence) for each that is not (the others are scored)."""
    channels, size, _ = model.config.image_shape
    mnist = uses_digit_recipe(model)
    names, inputs, messages = [], [], []
    for name, data, key in items:
        x, error = prepared_input(key, data, name, channels, size, mnist, drawn=drawn)
        if error is not None:
            messages.append(("error", error))
        elif x is None:
            messages.append(("info", f"No ink found in {name}: draw or upload a digit."))
        else:
            names.append(name)
            inputs.append(x)
    if not inputs:
        return names, inputs, [], messages
    scorer = get_likelihood_model(state.active_folder)
    return names, inputs, scored_images(scorer, state.active_folder, np.stack(inputs).tobytes(), len(inputs)), messages


def on_anomaly_input(model: training.ConvVAE, new_images: bool) -> None:
    """New images to score (an upload, a drawing, the other source) or another one picked: load
    the inspected image's latent, and a conditional model's class for it, before the controls
    are drawn. New images are inspected from the most anomalous."""
    if new_images:
        state.drop("anomaly_pick")
    items, drawn = anomaly_items(uses_digit_recipe(model))
    if not items or len(items) > MAX_UPLOADS:
        return
    _, _, scored, _ = scored_items(model, items, drawn)
    if not scored:
        return
    picked = state.get("anomaly_pick")
    inspected = scored[picked if picked in range(len(scored)) else ranking_order(scored)[0]]
    if inspected.label is not None:
        state.class_label = inspected.label
    state.set_latent(inspected.mu)


def anomaly_view(model: training.ConvVAE, atlas: Atlas | None) -> None:
    """Draw or upload images: preprocessed as the training images were, encoded, reconstructed,
    scored (−ELBO minus complexity, with the percentile among the test set), ranked when there
    are several; the inspected one's latent is loaded (on_anomaly_input), so the map shows where
    it lies."""
    mnist = uses_digit_recipe(model)
    folder = state.active_folder
    source_column, result_column = st.columns([2, 3])
    with source_column:
        how = st.radio(
            "Image",
            ["draw", "upload"] if mnist else ["upload"],
            horizontal=True,
            key="anomaly_source",
            on_change=on_anomaly_input,
            args=(model, True),
        )
        if how == "draw":
            sketch_component()(
                key="sketch", default={"drawing": None}, on_drawing_change=lambda: on_anomaly_input(model, True)
            )
        else:
            st.file_uploader(
                f"PNG or JPEG images: one, or up to {MAX_UPLOADS} to rank",
                type=["png", "jpg", "jpeg"],
                accept_multiple_files=True,
                key="anomaly_upload",
                on_change=on_anomaly_input,
                args=(model, True),
            )
    items, drawn = anomaly_items(mnist)
    with result_column:
        if not items:
            st.caption(
                (
                    "Draw a digit, or upload images, to see how the model scores them."
                    if mnist
                    else "Upload images to see how the model scores them."
                )
                + f" To rank a whole folder: `python -m training score {shell_path(folder)} "
                "FOLDER --sheet worst.png`."
            )
            return
        if len(items) > MAX_UPLOADS:
            st.error(
                f"{len(items)} images: the page ranks up to {MAX_UPLOADS} at a time; for more, "
                f"`python -m training score {shell_path(folder)} FOLDER` ranks a whole folder."
            )
            return
        names, inputs, scored, messages = scored_items(model, items, drawn)
        for level, message in messages:  # a file that cannot be used gets its sentence
            (st.error if level == "error" else st.info)(message)
        if not scored:
            return
        if len(scored) == 1:
            show_scored(model, atlas, inputs[0], scored[0])
            return
    # several: the ranking takes the page's width (in the column, a 1024-px screen cut its
    # score and percentile off), and the picked one is shown below it
    chosen = ranking_table(model, atlas, names, inputs, scored)
    show_scored(model, atlas, inputs[chosen], scored[chosen])


def ranking_table(
    model: training.ConvVAE, atlas: Atlas | None, names: list[str], inputs: list[np.ndarray], scored: list[ScoredImage]
) -> int:
    """Several images ranked, most anomalous first, with a CSV download; returns the position
    (in NAMES) of the one picked for a closer look, the most anomalous at first."""
    rows = ranking(names, inputs, scored, atlas, class_names(model))
    columns = ["rank", "image", "file", "score", "above"] + (["label"] if model.config.num_classes else [])
    # every row in sight up to 8 (64-px rows under a header), then the table scrolls
    st.dataframe(
        rows,
        hide_index=True,
        row_height=64,
        height=min(len(rows), 8) * 64 + 40,
        column_order=columns,
        column_config={
            "image": st.column_config.ImageColumn("input · reconstruction"),
            "score": st.column_config.NumberColumn("score (nats)", format="%.1f"),
            "above": st.column_config.NumberColumn("above % of test images", format="%.1f"),
            "label": st.column_config.TextColumn("read as"),
        },
    )
    st.download_button("Download the ranking (CSV)", ranking_csv(rows), "anomaly-ranking.csv", "text/csv")
    ranks = {row["position"]: row["rank"] for row in rows}
    return st.selectbox(
        "Inspect",
        [row["position"] for row in rows],
        key="anomaly_pick",
        on_change=on_anomaly_input,
        args=(model, False),
        width=360,
        format_func=lambda i: f"#{ranks[i]} {names[i]}",
    )


def show_scored(model: training.ConvVAE, atlas: Atlas | None, x: np.ndarray, scored: ScoredImage) -> None:
    """One scored image large, beside its reconstruction, with its score (its latent was loaded
    by on_anomaly_input)."""
    shown = np.concatenate([to_uint8(x[None])[0], scored.reconstruction], axis=1)
    st.image(png_bytes(upscale(shown, 6)), caption="the model's input · its reconstruction from the mean")
    line = f"Anomaly score: **{scored.score:.1f} nats** (−ELBO {scored.neg_elbo:.1f} minus the image's complexity)"
    higher = percentile_among_test_set(atlas, scored.score)
    if higher is not None:
        line += f", more anomalous than **{higher:.1f}%** of the {len(atlas):,} test images"
    if scored.label is not None:
        names = class_names(model)
        line += f". The model reads it as a **{names[scored.label]}** (the class that explains it best)"
    scorer = get_likelihood_model(state.active_folder).likelihood_decoder
    if scorer:  # an adversarial decoder is no likelihood: the parent's scores, and its reconstruction
        line += f". Scored with the parent's decoder ({scorer}), the calibrated likelihood"
    st.markdown(line + ". Its latent is loaded: the star on the map marks where it lies.")


@st.cache_data(max_entries=256, show_spinner=False)
def prepared_input(
    key: str, _data: object, name: str, channels: int, size: int, mnist: bool, drawn: bool
) -> tuple[np.ndarray | None, str | None]:
    """One upload (an UploadedFile, read only here) or, DRAWN, the pad's drawing (a PNG data
    URL, checked as such: it comes from the browser) as the model's input: (x (C, H, W)
    float32, None), (None, None) when there is no ink, or (None, the error's sentence). Cached
    by KEY (the upload's id, the drawing's hash), not by the bytes, which could be 100 × 10 MB
    to hash on every rerun: decoding a large photograph is slow, and the page
    reruns often."""
    try:
        image_bytes = data_url_bytes(_data) if drawn else _data.getvalue()
        x = model_input(read_image_bytes(image_bytes, name, channels), channels, size, mnist)
    except training.DataError as error:
        return None, str(error)
    return (None if x is None else x.astype(np.float32)), None


@st.cache_data(max_entries=16, show_spinner=False)
def scored_images(_model: training.ConvVAE, folder: str, x_bytes: bytes, count: int) -> list[ScoredImage]:
    """score_images of COUNT preprocessed images, cached by the model folder and their bytes."""
    return score_images(_model, np.frombuffer(x_bytes, np.float32).reshape(count, *_model.config.image_shape))


# --------------------------------------------------------------------------- page


def main() -> None:
    st.set_page_config(page_title="latent-explorer", page_icon="🧭", layout="wide")
    init_session()
    available = checkpoints()
    picker = st.sidebar.container()  # first in the sidebar, filled after the workbench
    folder, model = choose_model(available, picker)
    st.title("latent-explorer")
    for warning in state.warnings:
        st.warning(say(warning))
    workbench(folder, model)
    with picker:
        model_picker(available, sharpened_pair(folder, model.checkpoint_config))
    metrics = training.read_metrics(folder)
    with st.sidebar:
        st.caption(
            f"{Path(folder).name}: latent size {model.config.latent_dim}, "
            f"{'×'.join(map(str, model.config.image_shape))} images"
        )
        st.toggle(
            "Decode in the browser",
            key="live_decoding",
            help="Run the decoder in your browser (WebAssembly), so the image follows the "
            "sliders while you drag. Off: decode on the server when a slider is released.",
        )
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


main()
