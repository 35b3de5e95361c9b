"""The latent's controls: sliders z1…zD and a 2-D pad decoded in the browser (or Streamlit's
sliders decoded on the server), the decoded image beside the compared decoder's, the class
picker of a conditional model, and the buttons that set z."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import streamlit as st

import training
from explorer.atlas import Atlas
from explorer.latent import sample_prior, snap_latent
from explorer.live import compare_payload, latent_from_browser, live_payload
from explorer.map_data import map_label, map_means
from explorer.models import class_names
from explorer.render import decode_latents, png_bytes, upscale
from training.sampler import MixtureSampler
from ui.bundles import bundle_url, publish
from ui.page_state import chosen_label, state
from ui.resources import browser_data, browser_points, get_model, live_components, pad_plane_json
from ui.serving import under_base_path, without_server_paths

IMAGE_PIXELS = 336  # side of the decoded image as sent (nearest-neighbour upscaled)
STATIC = "app/static/"  # the vendored libraries (static/), served by server.enableStaticServing
# A new session's first run waits this long after the controls, so that the browser draws them
# before the rest of the page arrives (let_the_controls_draw_first).
FIRST_PAINT_PAUSE_S = 0.2


def decoder_caption(folder: str, model: training.ConvVAE) -> str:
    kind = "sharpened decoder" if "sharpen" in model.checkpoint_config else "VAE decoder"
    return f"{kind} · {Path(folder).name}"


def class_picker(model: training.ConvVAE) -> None:
    """A conditional model's class: the same z, drawn as the class picked."""
    names = class_names(model)
    if state.get("class_label") not in range(model.config.num_classes):
        state.class_label = 0
    st.segmented_control(
        "Class (this model is conditional: the same z, drawn as the class you pick)",
        list(range(model.config.num_classes)),
        key="class_label",
        format_func=lambda k: names[k] if k < len(names) else str(k),
    )


def compared_decoders(
    folder: str, model: training.ConvVAE, pair: tuple[Path, Path] | None
) -> tuple[tuple[str, training.ConvVAE], ...]:
    """The Compare switch for a model with a sharpened PAIR (explorer.models.sharpened_pair: the
    same latent space), and (folder, model) of each decoder the page then draws z with."""
    if pair is None:
        return ((folder, model),)
    sharp = "sharpen" in model.checkpoint_config
    other_kind, other_name = ("the VAE decoder", pair[0].name) if sharp else ("the sharpened decoder", pair[1].name)
    st.toggle(
        f"Compare with {other_kind} ({other_name})",
        key="compare",
        help="The same z through both decoders, side by side: the sharpened one was trained adversarially "
        "on this encoder, so z means the same in both.",
    )
    if not state.get("compare", False):
        return ((folder, model),)
    other = str(pair[1] if Path(pair[0]).resolve() == Path(folder).resolve() else pair[0])
    try:
        return ((folder, model), (other, get_model(other)))
    except training.CheckpointError as error:
        st.warning(without_server_paths(f"The compared decoder cannot be loaded: {error}"))
        return ((folder, model),)


def latent_controls(decoders: tuple[tuple[str, training.ConvVAE], ...]) -> bool:
    """The browser's controls, or the server's sliders where the browser cannot decode; whether
    the browser's are shown."""
    live = state.live_decoding and state.live_unavailable is None
    if live:
        live_controls(decoders)
        let_the_controls_draw_first()
        return True
    if state.live_decoding:
        st.warning(
            f"Live decoding is off: {state.live_unavailable}. The sliders below decode on the server, once per release."
        )
    server_controls(decoders)
    return False


def live_controls(decoders: tuple[tuple[str, training.ConvVAE], ...]) -> None:
    """Sliders z1…zD, the decoded image (beside it the compared decoder's) and a 2-D pad,
    decoded in the browser while dragging."""
    (folder, model), compared = decoders[0], decoders[1:]
    controls_component, _ = live_components()
    # the decoders are fetched by the browser over HTTP (ui/bundles.py), once per model
    bundle_id = publish(browser_data(model, folder))
    points = browser_points(folder, model.config.latent_dim, "test")  # the map's too: fetched once
    compare = None
    for other_folder, other in compared:
        other_id = publish(browser_data(other, other_folder))
        image = placeholder(other, other_id)
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
        bundle_url(),
        image_pixels=placeholder(model, bundle_id),
        num_classes=model.config.num_classes,
        label=chosen_label(model) or 0,
        unused=state.inactive,
        caption=decoder_caption(folder, model) if compared else "",
        compare=compare,
        concept=None if state.concept is None else state.concept.to_json(),
        points_id=None if points is None else publish(points),
    )
    controls_component(
        data=payload,
        key="live_latent",
        default={"latent": None, "status": None},
        on_latent_change=on_live_latent,
        on_status_change=on_live_status,
    )
    st.caption(
        "Decoded in your browser as you drag. The pad walks z across a plane: the two "
        "principal directions of the encoded test set, or any two dimensions. Click a value to type it."
    )


def let_the_controls_draw_first() -> None:
    """On a session's first run, a pause after the controls, so that they reach the browser
    alone: arriving with the map, the view and the sidebar, they (and the first image) were drawn
    only after all of those, their widgets' code loaded (docs/benchmarks.md, "The page")."""
    if state.get("controls_drawn"):
        return
    state.controls_drawn = True
    time.sleep(FIRST_PAINT_PAUSE_S)


def placeholder(model: training.ConvVAE, bundle_id: str) -> bytes | None:
    """The server's decode of z (8-bit C·H·W values), drawn until the browser's decoder
    BUNDLE_ID runs: on the first run that sends that decoder, and no other (after it the browser
    draws z itself; a decode on every rerun was a third of a release's server time)."""
    sent = state.get("placeholders_sent") or set()
    if bundle_id in sent:
        return None
    state.placeholders_sent = sent | {bundle_id}
    return decode_latents(model, state.latent, chosen_label(model))[0].transpose(2, 0, 1).tobytes()


def server_controls(decoders: tuple[tuple[str, training.ConvVAE], ...]) -> None:
    """The fallback: Streamlit sliders, decoded on the server when a slider is released."""
    latent_dim = decoders[0][1].config.latent_dim
    low, high = state.ranges
    image_column, slider_column, _ = st.columns([3, 4, 3])
    with slider_column:
        # Move the sliders only when Python set the latent: writing a widget's value on every
        # run would push a stale value back into a slider the user is still stepping.
        stale = state.get("slider_revision") != state.latent_revision
        # on the grid in float64: float32 → float64 can land a hair outside the bounds, which the slider refuses
        shown = snap_latent(state.latent, low, high)
        for i in range(latent_dim):
            if stale or state.slider(i) is None:
                state.set_slider(i, float(shown[i]))
            unused = i in state.inactive
            st.slider(
                f"z{i + 1}" + (" (unused)" if unused else ""),
                float(low[i]),
                float(high[i]),
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


def browser_asset_url(folder: str = "ort/") -> str:
    """Absolute path of a folder of vendored files (static/FOLDER), under the server's base path."""
    return under_base_path(STATIC + folder)


def latent_buttons(latent_dim: int, sampler: MixtureSampler | None, atlas: Atlas | None) -> None:
    """Random, Random (fitted), Origin, and a test image's mean by index."""
    # content-sized buttons in a wrapping row: fixed columns cut their labels short in a narrow column
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


# --------------------------------------------------------------------------- callbacks


def on_random(latent_dim: int) -> None:
    state.rng_seed += 1
    state.set_latent(sample_prior(np.random.default_rng(state.rng_seed), latent_dim))


def on_random_fitted(sampler: MixtureSampler) -> None:
    state.rng_seed += 1
    state.set_latent(sampler.sample(np.random.default_rng(state.rng_seed), 1)[0])


def on_reset(latent_dim: int) -> None:
    state.set_latent(np.zeros(latent_dim, np.float32))


def load_map_row(atlas: Atlas, row: int) -> None:
    """An encoded image's latent into the controls, by its map row (explorer/map_data.py: the
    test split's atlas rows, then the training split's); a conditional model also takes its
    class (the mean was encoded with it)."""
    if state.has("class_label"):
        state.class_label = map_label(atlas, row)
    state.set_latent(map_means(atlas, [row])[0])


def on_load_test_image(atlas: Atlas) -> None:
    row = int(np.searchsorted(atlas.index, state.test_index))
    load_map_row(atlas, min(row, len(atlas) - 1))


def on_slider(latent_dim: int) -> None:
    """A server-side slider moved: the sliders are the latent (no revision: nothing to move)."""
    state.latent = np.array([state.slider(i) for i in range(latent_dim)], np.float32)


def on_live_latent() -> None:
    """The browser's controls were released: take their latent, checked and clamped."""
    low, high = state.ranges
    z = latent_from_browser(state.live_latent.get("latent"), low, high)
    if z is not None:
        state.latent = z


def on_live_status() -> None:
    """The browser could not start its decoder (no WebAssembly, …): use the server's sliders."""
    status = state.live_latent.get("status")
    if isinstance(status, str) and status.startswith("unavailable"):
        state.live_unavailable = status.partition(": ")[2][:200] or "unknown reason"


def unused_latents_sentence(inactive: list[int], latent_dim: int) -> str:
    """'7 of 8 latents in use: z7 is not.' for INACTIVE [6] (0-based indices)."""
    names = ", ".join(f"z{i + 1}" for i in inactive)
    return (
        f"{latent_dim - len(inactive)} of {latent_dim} latents in use: {names} "
        f"{'is' if len(inactive) == 1 else 'are'} not."
    )
