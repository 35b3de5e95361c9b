"""Plotly figures for the page."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from explorer.atlas import Atlas

# Tableau-10: distinct, colour-blind-aware class colours.
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
           "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")


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
        if isinstance(curve, int) and isinstance(index, int) and 0 <= curve < len(traces) \
                and 0 <= index < len(traces[curve]):
            rows.append(int(traces[curve][index]))
    return rows


def atlas_figure(atlas: Atlas, class_names: tuple[str, ...] | list[str], marker: tuple[float, float] | None = None,
                 path: np.ndarray | None = None, height: int = 520) -> go.Figure:
    """A WebGL scatter of the atlas, one trace per class (so the legend filters classes),
    customdata = atlas row, plus the current latent as a star and an optional path (P, 2)."""
    figure = go.Figure()
    for rows in class_rows(atlas):
        label = int(atlas.labels[rows[0]])
        name = class_names[label] if label < len(class_names) else str(label)
        figure.add_trace(go.Scattergl(
            x=atlas.embedding[rows, 0], y=atlas.embedding[rows, 1], mode="markers", name=name,
            marker=dict(size=4, color=PALETTE[label % len(PALETTE)], opacity=0.7),
            selected=dict(marker=dict(size=9, opacity=1.0)),
            unselected=dict(marker=dict(opacity=0.7)),  # a click must not fade the map
            customdata=atlas.index[rows],
            hovertemplate=f"<b>{name}</b><br>test image #%{{customdata}}<extra></extra>",
        ))
    if path is not None and len(path):
        figure.add_trace(go.Scatter(
            x=path[:, 0], y=path[:, 1], mode="lines+markers", name="interpolation",
            line=dict(color="black", width=2), marker=dict(size=6, color="black"), hoverinfo="skip",
        ))
    if marker is not None:
        figure.add_trace(go.Scatter(
            x=[marker[0]], y=[marker[1]], mode="markers", name="current z",
            marker=dict(symbol="star", size=30, color="#111", line=dict(color="white", width=2)),
            hoverinfo="skip",
        ))
    figure.update_layout(
        height=height, margin=dict(l=0, r=0, t=30, b=0), dragmode="pan",
        legend=dict(itemsizing="constant", title="class (click to hide)"),
        xaxis=dict(visible=False), yaxis=dict(visible=False, scaleanchor="x"),
        # a white card in light and dark themes alike: the black star and path need the white
        # behind them, and the legend dark text beside it
        plot_bgcolor="white", paper_bgcolor="white",
        font=dict(color="#31333f", family='"Source Sans Pro", "Source Sans 3", sans-serif'),  # Streamlit's
        uirevision="atlas",  # keep zoom and hidden classes across reruns
    )
    return figure
