"""Plotly figures for the page."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from explorer.atlas import Atlas, display_name

MAP_HEIGHT = 520  # px, the map's figure
# Tableau-10: distinct, colour-blind-aware class colours.
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")


def class_rows(atlas: Atlas) -> list[np.ndarray]:
    """Atlas rows of each class trace, in the order atlas_figure draws them."""
    return [np.flatnonzero(atlas.labels == label) for label in np.unique(atlas.labels)]


def selected_rows(atlas: Atlas, points: list[dict]) -> list[int]:
    """Atlas rows of the points in a plotly selection event (curve_number, point_index);
    points on the marker or path traces are ignored."""
    traces = class_rows(atlas)
    rows = []
    for point in points:
        curve, index = point.get("curve_number"), point.get("point_index")
        if (
            isinstance(curve, int)
            and isinstance(index, int)
            and 0 <= curve < len(traces)
            and 0 <= index < len(traces[curve])
        ):
            rows.append(int(traces[curve][index]))
    return rows


def class_trace(atlas: Atlas, rows: np.ndarray, class_names: tuple[str, ...] | list[str]) -> go.Scattergl:
    """The points of one class (ROWS of the atlas), coloured and hovered as the map shows them."""
    label = int(atlas.labels[rows[0]])
    name = class_names[label] if label < len(class_names) else str(label)
    named = atlas.names is not None
    title = "%{text}</b><br>" + name if named else name + "</b>"
    return go.Scattergl(
        x=atlas.embedding[rows, 0],
        y=atlas.embedding[rows, 1],
        mode="markers",
        name=name,
        marker=dict(size=4, color=PALETTE[label % len(PALETTE)], opacity=0.7),
        selected=dict(marker=dict(size=9, opacity=1.0)),
        unselected=dict(marker=dict(opacity=0.7)),  # a click must not fade the map
        customdata=np.stack([atlas.index[rows], rows], axis=1),
        text=[display_name(atlas.names[row]) for row in rows] if named else None,
        hovertemplate=f"<b>{title}<br>test image #%{{customdata[0]}}<extra></extra>",
    )


def atlas_figure(
    atlas: Atlas,
    class_names: tuple[str, ...] | list[str],
    marker: tuple[float, float] | None = None,
    path: np.ndarray | None = None,
    height: int = MAP_HEIGHT,
) -> go.Figure:
    """A WebGL scatter of the atlas, one trace per class (so the legend filters classes),
    customdata = (test-set position, atlas row), hovered with the image's name where the atlas
    has names, plus the current latent as a star and an optional path (P, 2)."""
    figure = go.Figure([class_trace(atlas, rows, class_names) for rows in class_rows(atlas)])
    if path is not None and len(path):
        figure.add_trace(
            go.Scatter(
                x=path[:, 0],
                y=path[:, 1],
                mode="lines+markers",
                name="interpolation",
                line=dict(color="black", width=2),
                marker=dict(size=6, color="black"),
                hoverinfo="skip",
            )
        )
    if marker is not None:
        figure.add_trace(
            go.Scatter(
                x=[marker[0]],
                y=[marker[1]],
                mode="markers",
                name="current z",
                marker=dict(symbol="star", size=30, color="#111", line=dict(color="white", width=2)),
                hoverinfo="skip",
            )
        )
    figure.update_layout(
        height=height,
        margin=dict(l=0, r=0, t=30, b=0),
        dragmode="pan",
        legend=dict(itemsizing="constant", title="class (click to hide)"),
        xaxis=dict(visible=False),
        yaxis=dict(visible=False, scaleanchor="x"),
        # a white card in light and dark themes alike: the black star and path need the white
        # behind them, and the legend dark text beside it
        plot_bgcolor="white",
        paper_bgcolor="white",
        font=dict(color="#31333f", family='"Source Sans Pro", "Source Sans 3", sans-serif'),  # Streamlit's
        uirevision="atlas",  # keep zoom and hidden classes across reruns
    )
    return figure


def _curve(rows: list[dict], key: str, name: str, colour: str, x: list, hover: str) -> go.Scatter:
    """One history line: ROWS' KEY against X (a gap where a row has no value), hovered as HOVER."""
    return go.Scatter(
        x=x,
        y=[row.get(key) for row in rows],
        name=name,
        mode="lines+markers",
        line=dict(color=colour, width=2),
        marker=dict(size=5),
        customdata=[row["step"] for row in rows],
        connectgaps=False,
        hovertemplate=f"{name}<br>{hover}<extra></extra>",
    )


def history_figure(rows: list[dict], height: int = 440) -> go.Figure:
    """A checkpoint's history (training/checkpoint.py's history.jsonl rows) against the epoch:
    above, the mean training loss since the previous row and the test −ELBO (nats per image);
    below, the test MSE per pixel of reconstructions decoded from the means."""
    from plotly.subplots import make_subplots  # noqa: PLC0415 - this figure alone needs it

    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.6, 0.4])
    epochs = [row["epoch"] for row in rows]
    series = (
        (1, "train_loss_nats", "training loss (mean since the previous point)", PALETTE[0], "%{y:.2f} nats"),
        (1, "test_neg_elbo_nats", "test −ELBO", PALETTE[1], "%{y:.2f} nats"),
        (2, "test_mse_per_pixel", "test MSE of decode(μ)", PALETTE[2], "%{y:.5f}"),
    )
    for row_number, key, name, colour, value in series:
        hover = f"epoch %{{x}} (step %{{customdata:,}})<br>{value}"
        figure.add_trace(_curve(rows, key, name, colour, epochs, hover), row=row_number, col=1)
    figure.update_yaxes(title_text="nats per image", row=1, col=1)
    figure.update_yaxes(title_text="MSE per pixel", row=2, col=1)
    figure.update_xaxes(title_text="epoch", row=2, col=1)
    # colours, fonts and grid from the page's theme (st.plotly_chart's default), light or dark
    figure.update_layout(
        height=height,
        margin=dict(l=0, r=0, t=30, b=0),
        hovermode="x unified",
        legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0),
    )
    return figure


def sharpen_history_figure(rows: list[dict], height: int = 480) -> go.Figure:
    """A sharpened checkpoint's history (training/sharpen.py's rows) against the step: the
    decoder's and the discriminator's mean losses since the previous row, and the test MSE."""
    from plotly.subplots import make_subplots  # noqa: PLC0415 - this figure alone needs it

    figure = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06)
    steps = [row["step"] for row in rows]
    series = (
        (1, "decoder_loss", "decoder loss (mean since the previous point)", "%{y:.2f}", "decoder"),
        (2, "disc_train_loss", "discriminator hinge loss (mean since the previous point)", "%{y:.3f}", "discriminator"),
        (3, "test_mse_per_pixel", "test MSE of decode(μ)", "%{y:.5f}", "test MSE"),
    )
    for row_number, key, name, value, axis in series:
        curve = _curve(rows, key, name, PALETTE[row_number - 1], steps, f"step %{{x:,}}<br>{value}")
        figure.add_trace(curve, row=row_number, col=1)
        figure.update_yaxes(title_text=axis, row=row_number, col=1)
    figure.update_xaxes(title_text="step", row=3, col=1)
    figure.update_layout(height=height, margin=dict(l=60, r=20, t=30, b=40), legend=dict(orientation="h", y=1.08))
    return figure
