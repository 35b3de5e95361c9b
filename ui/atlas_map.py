"""The map: the encoded test images (and the training split's, switched on) laid out by UMAP,
drawn in the browser (frontend/atlas_map.js), with the concept direction chosen under it and
the training images nearest z."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import streamlit as st

import training
from explorer.atlas import Atlas, nearest_training, place_on_map
from explorer.concept import SELECTED, Concept, concept_from_groups, group_choices, group_rows
from explorer.map_data import map_payload, map_size, row_from_browser, rows_from_browser, training_row_from_browser
from explorer.models import class_names
from explorer.render import png_bytes, png_data_url, to_uint8, upscale
from ui.bundles import bundle_url, publish
from ui.controls import browser_asset_url, load_map_row
from ui.page_state import state
from ui.resources import atlas_or_none, browser_points, browser_thumbnails, get_training_images, live_components
from ui.serving import shell_path, without_server_paths


def atlas_map(folder: str, model: training.ConvVAE, atlas: Atlas | None, path: np.ndarray | None, live: bool) -> None:
    """The map with the star at z (and the interpolation's PATH (P, D) when given), its caption,
    and under it the concept direction and the nearest training images."""
    if atlas is None:
        st.info(
            "This checkpoint has no atlas yet. Build one with "
            f"`python -m training atlas {shell_path(folder)}` to see the encoded test set here."
        )
        return
    names = map_classes(class_names(model), atlas)
    everything = split_switch(atlas)
    _, map_component = live_components()
    latent_dim = model.config.latent_dim
    # the bundles are fetched by the browser over HTTP (ui/bundles.py), once per model
    points_id = publish(browser_points(folder, latent_dim, "test"))
    train_points_id = publish(browser_points(folder, latent_dim, "training")) if everything else None
    thumbnails = browser_thumbnails(folder, latent_dim)
    path_xy = None if path is None else np.array([place_on_map(atlas, p) for p in path])
    payload = map_payload(
        (points_id, train_points_id),
        None if thumbnails is None else publish(thumbnails),
        names,
        state.latent,
        path_xy,
        model.config.image_shape,
        browser_asset_url("scatter/") + "regl-scatterplot.mjs",
        bundle_url(),
        Path(folder).name,
        state.get("map_training_image"),
    )
    map_component(
        data=payload,
        key="atlas_map",
        default={"clicked": None, "selection": None, "card": None},
        on_clicked_change=lambda: on_map_click(atlas),
        on_selection_change=lambda: on_map_selection(atlas),
        on_card_change=lambda: on_map_card(folder, model, atlas),
    )
    st.caption(map_caption(atlas, everything, live))
    concept_controls(atlas, names, live)
    nearest_training_view(folder, model, atlas, state.latent)


def map_classes(names: list[str], atlas: Atlas) -> list[str]:
    """A name for every class on the map: the model's, then numbers for any beyond them."""
    labels = [atlas.labels] + ([] if atlas.train_labels is None else [atlas.train_labels])
    count = max(int(max(label.max() for label in labels)) + 1, len(names))
    return [names[k] if k < len(names) else str(k) for k in range(count)]


def split_switch(atlas: Atlas) -> bool:
    """The switch between the test split and every encoded image; whether it is on."""
    if atlas.train_embedding is None:
        return False
    return st.toggle(
        f"Training split too ({len(atlas.train_embedding):,} more points)",
        key="map_everything",
        help="Draw the training images' encodings on the same map as the test set's: one UMAP of both.",
    )


def map_caption(atlas: Atlas, everything: bool, live: bool) -> str:
    drawn = f"{map_size(atlas, everything):,} encoded {'images' if everything else 'test images'}"
    act = "Point at the map to decode where you point, click to keep it" if live else "Click a point to load its latent"
    return (
        f"{drawn}, laid out by UMAP. {act}; Box and Lasso select (Esc clears), the box above finds points. "
        "The star is the current z, placed among its nearest neighbours (ringed)."
    )


def on_map_click(atlas: Atlas) -> None:
    """A click on a point loads its latent (and a conditional model's class: it was encoded with it)."""
    row = row_from_browser(state.atlas_map.get("clicked"), map_size(atlas, True))
    if row is None:
        return
    if row < len(atlas):
        state.test_index = int(atlas.index[row])
    load_map_row(atlas, row)


def on_map_card(folder: str, model: training.ConvVAE, atlas: Atlas) -> None:
    """The pointer rests on a training point: its image for the card, read from the data set."""
    row = training_row_from_browser(state.atlas_map.get("card"), atlas)
    if row is None:
        return
    try:
        source = get_training_images(folder, model, os.environ.get("LATENT_EXPLORER_DATA"))
        image = to_uint8(source.images([row]))[0]  # (H, W, C)
        state.map_training_image = {"row": row, "image": png_data_url(image)}
    except training.DataError:
        state.map_training_image = {"row": row, "image": None}


def on_map_selection(atlas: Atlas) -> None:
    """A box, lasso or search selection: its map rows, kept as a group for a concept direction."""
    state.map_selection = rows_from_browser(state.atlas_map.get("selection"), map_size(atlas, True))


# --------------------------------------------------------------------------- concept directions


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


# --------------------------------------------------------------------------- nearest training images


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
            without_server_paths(
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
