"""explorer/state.py and the sliders' grid: the page's state declared once, the latent snapped
the same way wherever it is set."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.latent import snap_latent
from explorer.live import latent_from_browser
from explorer.state import PageState


def test_the_page_state_refuses_a_key_it_does_not_declare() -> None:
    store: dict = {}
    state = PageState(store)
    state.rng_seed = 3
    assert store == {"rng_seed": 3} and state.rng_seed == 3 and state.has("rng_seed")
    with pytest.raises(AttributeError, match="PageState has no key 'rng_sed'"):
        state.rng_sed = 4  # a typo must not start a second copy of the value
    with pytest.raises(AttributeError, match="declare it in explorer/state.py"):
        _ = state.latnet
    with pytest.raises(AttributeError):
        state.get("pending_label")
    assert state.get("view", "traverse") == "traverse"
    state.drop("rng_seed")
    assert store == {} and not state.has("rng_seed")


def test_setting_the_latent_snaps_it_to_the_sliders_and_moves_the_controls() -> None:
    low, high = np.full(3, -2.5, np.float32), np.full(3, 2.5, np.float32)
    state = PageState({"ranges": (low, high)})
    state.set_latent(np.array([0.123, -7.0, 2.496]))
    assert state.latent.dtype == np.float32
    assert state.latent.tolist() == pytest.approx([0.12, -2.5, 2.5], abs=1e-7)
    assert state.latent_revision == 1
    state.set_latent(np.zeros(3))
    assert state.latent_revision == 2  # each set from Python tells the browser to move its controls
    state.set_slider(1, 0.5)
    assert state.slider(1) == 0.5 and state.slider(0) is None and PageState.slider_key(1) == "z2"


def test_snap_latent_rounds_halves_to_even_and_clips() -> None:
    low, high = np.array([-1.0, -1.0, -1.0, -1.0, 0.0]), np.array([1.0, 1.0, 1.0, 1.0, 0.3])
    snapped = snap_latent(np.array([0.125, 0.135, -0.125, 0.004999, 0.29999]), low, high)
    assert snapped.dtype == np.float64
    assert snapped.tolist() == [0.12, 0.14, -0.12, 0.0, 0.3]
    # the browser's latent goes through the same grid
    browser = latent_from_browser(
        [0.125, 0.135, -0.125, 0.004999, 5.0], low.astype(np.float32), high.astype(np.float32)
    )
    assert browser.tolist() == pytest.approx([0.12, 0.14, -0.12, 0.0, 0.3], abs=1e-7)
