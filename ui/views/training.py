"""The Training view: how the model was made in a sentence, the command that makes it again,
and its history's curves, downloadable as CSV."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

import training
from explorer.figures import history_figure, sharpen_history_figure
from explorer.history import history_csv, run_summary, sharpen_command, sharpen_summary
from training.commands.train import train_command
from ui.context import ViewContext
from ui.resources import history_rows
from ui.serving import without_server_paths


def render(context: ViewContext) -> None:
    """A VAE's recipe, command and history (test figures at each evaluation, the training
    loss between); a sharpened decoder's, by sharpened_view."""
    folder, config = context.folder, context.model.checkpoint_config
    if "sharpen" in config:
        sharpened_view(folder, config)
        return
    if "train" in config:
        st.markdown(run_summary(config, training.read_metrics(folder)))
        st.code(
            without_server_paths(train_command(config, f"runs/{Path(folder).name}")), language="bash", wrap_lines=True
        )
    else:  # saved by save_model from Python with the model's config alone
        st.info("This checkpoint does not record how it was trained (its config.json has no train section).")
    rows = shown_history(
        folder,
        missing="This checkpoint has no training history: it was trained before `python -m training train` "
        "kept one (history.jsonl, a line per evaluation). Train it again to see its curves.",
        empty="The training history is empty.",
    )
    if rows is None:
        return
    st.plotly_chart(history_figure(rows), key="history_chart", width="stretch")
    last = rows[-1]
    st.caption(
        f"{len(rows)} evaluations over {round(last['epoch'], 2):g} epochs. The training loss is each point's mean over "
        "the steps since the previous one, with one posterior sample per image, as trained (β-weighted); "
        "the test −ELBO also takes one sample, the MSE decodes the means."
    )
    st.download_button("Download the history (CSV)", history_csv(rows), f"{Path(folder).name}-history.csv", "text/csv")


def shown_history(folder: str, missing: str, empty: str) -> list[dict] | None:
    """FOLDER's history rows; None, with the sentence MISSING, EMPTY or the reading's error
    shown, when there are none to draw."""
    try:
        rows = history_rows(folder)
    except training.CheckpointError as error:
        st.warning(without_server_paths(str(error)))
        return None
    if not rows:
        st.info(missing if rows is None else empty)
        return None
    return rows


def sharpened_view(folder: str, config: dict) -> None:
    """How a sharpened decoder was made: its recipe in a sentence, the command, its curves."""
    st.markdown(sharpen_summary(config, training.read_metrics(folder)))
    st.code(
        without_server_paths(sharpen_command(config, f"runs/{Path(folder).name}")), language="bash", wrap_lines=True
    )
    no_history = "This checkpoint has no sharpening history (history.jsonl)."
    rows = shown_history(folder, missing=no_history, empty=no_history)
    if rows is None:
        return
    st.plotly_chart(sharpen_history_figure(rows), key="history_chart", width="stretch")
    st.caption(
        f"{len(rows)} evaluations over {rows[-1]['step']:,} steps. Each loss is its mean over the steps since the "
        "previous point; the test MSE decodes the encoder's means, as for the VAE."
    )
    st.download_button("Download the history (CSV)", history_csv(rows), f"{Path(folder).name}-history.csv", "text/csv")
