"""The session's state, a view of st.session_state whose every key is declared in
explorer/state.py, and the two reads of it every panel makes."""

from __future__ import annotations

import numpy as np
import streamlit as st

import training
from explorer.state import PageState

state = PageState(st.session_state)


def current_latent() -> np.ndarray:
    """The page's latent, (D,) float32: the one value every panel reads."""
    return state.latent.copy()


def chosen_label(model: training.ConvVAE) -> int | None:
    """The class a conditional model decodes with (the page's class picker); None otherwise."""
    # a segmented control can be unselected (None): the first class then
    return int(state.get("class_label") or 0) if model.config.num_classes else None
