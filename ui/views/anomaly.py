"""The Anomaly view: draw or upload images, prepared as the training images were, encoded,
reconstructed and scored (−ELBO minus complexity, with the percentile among the test set),
ranked when there are several; the inspected one's latent is loaded, so the map shows where
it lies."""

from __future__ import annotations

import hashlib

import numpy as np
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
from explorer.atlas import Atlas, nearest_class
from explorer.models import class_names
from explorer.preprocess import data_url_bytes, read_image_bytes
from explorer.render import png_bytes, to_uint8, upscale
from training.images import model_input, uses_digit_recipe
from ui.context import ViewContext
from ui.page_state import state
from ui.resources import get_likelihood_model, sketch_component
from ui.serving import shell_path

Item = tuple[str, object, str]  # (name, an upload or the pad's drawing, the key its preparation is cached by)


def render(context: ViewContext) -> None:
    model, folder = context.model, context.folder
    source_column, result_column = st.columns([2, 3])
    with source_column:
        image_source(context)
    items, drawn = anomaly_items(uses_digit_recipe(model))
    with result_column:
        if not items:
            digits = uses_digit_recipe(model)
            st.caption(
                (
                    "Draw a digit, or upload images, to see how the model scores them."
                    if digits
                    else "Upload images to see how the model scores them."
                )
                + f" To rank a whole folder: `python -m training score {shell_path(folder)} FOLDER --sheet worst.png`."
            )
            return
        if len(items) > MAX_UPLOADS:
            st.error(
                f"{len(items)} images: the page ranks up to {MAX_UPLOADS} at a time; for more, "
                f"`python -m training score {shell_path(folder)} FOLDER` ranks a whole folder."
            )
            return
        names, inputs, scored, messages = scored_items(model, folder, items, drawn)
        for level, message in messages:  # a file that cannot be used gets its sentence
            (st.error if level == "error" else st.info)(message)
        if not scored:
            return
        if len(scored) == 1:
            show_scored(context, inputs[0], scored[0])
            return
    # several: the ranking takes the page's width (a column would cut its figures off), and the
    # picked one is shown below it
    chosen = ranking_table(context, names, inputs, scored)
    show_scored(context, inputs[chosen], scored[chosen])


def image_source(context: ViewContext) -> None:
    """Draw (digit models) or upload: each new image is scored and inspected (on_anomaly_input)."""
    model, folder = context.model, context.folder
    how = st.radio(
        "Image",
        ["draw", "upload"] if uses_digit_recipe(model) else ["upload"],
        horizontal=True,
        key="anomaly_source",
        on_change=on_anomaly_input,
        args=(model, folder, True),
    )
    if how == "draw":
        sketch_component()(
            key="sketch", default={"drawing": None}, on_drawing_change=lambda: on_anomaly_input(model, folder, True)
        )
    else:
        st.file_uploader(
            f"PNG or JPEG images: one, or up to {MAX_UPLOADS} to rank",
            type=["png", "jpg", "jpeg"],
            accept_multiple_files=True,
            key="anomaly_upload",
            on_change=on_anomaly_input,
            args=(model, folder, True),
        )


def anomaly_items(digits: bool) -> tuple[list[Item], bool]:
    """The images the view scores, from its widgets' state, and whether they are the pad's
    drawing (else uploads); DIGITS: the model draws digits, so the pad is the default source."""
    if state.get("anomaly_source", "draw" if digits else "upload") == "draw":
        drawing = (state.get("sketch") or {}).get("drawing")
        key = hashlib.sha256(repr(drawing).encode()).hexdigest()
        return ([("the drawing", drawing, key)] if drawing else []), True
    # each upload's id (stable across reruns) keys the cached decoding, not its bytes
    return [(upload.name, upload, upload.file_id) for upload in state.get("anomaly_upload") or []], False


def scored_items(
    model: training.ConvVAE, folder: str, items: list[Item], drawn: bool
) -> tuple[list[str], list[np.ndarray], list[ScoredImage], list[tuple[str, str]]]:
    """ITEMS prepared as the model's inputs and scored: the usable ones' names, inputs and
    scores, and ("error" or "info", sentence) for each that is not (the others are scored)."""
    channels, size, _ = model.config.image_shape
    digits = uses_digit_recipe(model)
    names, inputs, messages = [], [], []
    for name, data, key in items:
        x, error = prepared_input(key, data, name, channels, size, digits, drawn=drawn)
        if error is not None:
            messages.append(("error", error))
        elif x is None:
            messages.append(("info", f"No ink found in {name}: draw or upload a digit."))
        else:
            names.append(name)
            inputs.append(x)
    if not inputs:
        return names, inputs, [], messages
    scorer = get_likelihood_model(folder)
    return names, inputs, scored_images(scorer, folder, np.stack(inputs).tobytes(), len(inputs)), messages


def on_anomaly_input(model: training.ConvVAE, folder: str, new_images: bool) -> None:
    """New images to score (an upload, a drawing, the other source) or another one picked: load
    the inspected image's latent, and a conditional model's class for it, before the controls
    are drawn. New images are inspected from the most anomalous."""
    if new_images:
        state.drop("anomaly_pick")
    items, drawn = anomaly_items(uses_digit_recipe(model))
    if not items or len(items) > MAX_UPLOADS:
        return
    _, _, scored, _ = scored_items(model, folder, items, drawn)
    if not scored:
        return
    picked = state.get("anomaly_pick")
    inspected = scored[picked if picked in range(len(scored)) else ranking_order(scored)[0]]
    if inspected.label is not None:
        state.class_label = inspected.label
    state.set_latent(inspected.mu)


def ranking_table(context: ViewContext, names: list[str], inputs: list[np.ndarray], scored: list[ScoredImage]) -> int:
    """Several images ranked, most anomalous first, with a CSV download; returns the position
    (in NAMES) of the one picked for a closer look, the most anomalous at first."""
    model = context.model
    rows = ranking(names, inputs, scored, context.atlas, class_names(model))
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
        args=(model, context.folder, False),
        width=360,
        format_func=lambda i: f"#{ranks[i]} {names[i]}",
    )


def show_scored(context: ViewContext, x: np.ndarray, scored: ScoredImage) -> None:
    """One scored image large, beside its reconstruction, with its score (its latent was loaded
    by on_anomaly_input)."""
    atlas: Atlas | None = context.atlas
    shown = np.concatenate([to_uint8(x[None])[0], scored.reconstruction], axis=1)
    st.image(png_bytes(upscale(shown, 6)), caption="the model's input · its reconstruction from the mean")
    line = f"Anomaly score: **{scored.score:.1f} nats** (−ELBO {scored.neg_elbo:.1f} minus the image's complexity)"
    higher = percentile_among_test_set(atlas, scored.score)
    if higher is not None:
        line += f", more anomalous than **{higher:.1f}%** of the {len(atlas):,} test images"
    if scored.label is not None:
        read_as = context.class_names[scored.label]
        line += f". The model reads it as a **{read_as}** (the class that explains it best)"
    if atlas is not None:
        label, votes = nearest_class(atlas, scored.mu)
        near = context.class_names[label] if label < len(context.class_names) else str(label)
        line += f". Its latent lies among the **{near}** test images ({votes} of the 5 nearest)"
    scorer = get_likelihood_model(context.folder).likelihood_decoder
    if scorer:  # an adversarial decoder is no likelihood: the parent's scores, and its reconstruction
        line += f". Scored with the parent's decoder ({scorer}), the calibrated likelihood"
    st.markdown(line + ". Its latent is loaded: the star on the map marks where it lies.")


@st.cache_data(max_entries=256, show_spinner=False)
def prepared_input(
    key: str, _data: object, name: str, channels: int, size: int, digits: bool, drawn: bool
) -> tuple[np.ndarray | None, str | None]:
    """One upload (an UploadedFile, read only here) or, DRAWN, the pad's drawing (a PNG data
    URL, checked as such: it comes from the browser) as the model's input: (x (C, H, W)
    float32, None), (None, None) when there is no ink, or (None, the error's sentence). Cached
    by KEY (the upload's id, the drawing's hash), not by the bytes, which could be a hundred
    large files to hash on every rerun: decoding a large photograph is slow, and the page
    reruns often."""
    try:
        image_bytes = data_url_bytes(_data) if drawn else _data.getvalue()
        x = model_input(read_image_bytes(image_bytes, name, channels), channels, size, digits)
    except training.DataError as error:
        return None, str(error)
    return (None if x is None else x.astype(np.float32)), None


@st.cache_data(max_entries=16, show_spinner=False)
def scored_images(_model: training.ConvVAE, folder: str, x_bytes: bytes, count: int) -> list[ScoredImage]:
    """score_images of COUNT preprocessed images, cached by the model folder and their bytes."""
    return score_images(_model, np.frombuffer(x_bytes, np.float32).reshape(count, *_model.config.image_shape))
