"""Plotly figures for the page: the training history."""

from __future__ import annotations

import plotly.graph_objects as go

from explorer.map_data import PALETTE


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
