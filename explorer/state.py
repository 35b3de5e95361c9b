"""The page's session state, declared in one place.

Streamlit keeps a session's state in a mapping of string keys. app.py reads and writes it only
through PageState, whose annotations below list every key the page uses, with its type and
meaning: the page's own values first, then the values widgets own (Streamlit sets them; Python
may set one before its widget is drawn, as a callback does). A name that is not declared here
is an AttributeError, so a typo cannot quietly start a second copy of a value.

    page = PageState(st.session_state)
    page.set_latent(z, low, high)   # snapped to the sliders' grid; the browser's controls move
    page.latent                     # (D,) float32
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import numpy as np

from explorer.latent import snap_latent


class PageState:
    # --- the page's own values
    initialised: bool  # the first run of the session (reading the URL) is done
    latent: np.ndarray  # (D,) float32: the one latent every panel reads, on the sliders' grid
    latent_revision: int  # bumped whenever Python sets the latent, so the browser's controls move
    slider_revision: int  # the latent_revision the server-side sliders last showed
    ranges: tuple  # (low, high), each (D,) float32: the sliders' ranges for the active model
    inactive: list  # 0-based latents the active model leaves unused
    active_folder: str | None  # the checkpoint folder the page shows; None before the first load
    url_latent: str | None  # z as the URL gave it, until the first model takes it
    warnings: list  # sentences shown at the top of the page (URL values refused, a broken atlas)
    rng_seed: int  # draws so far: each random draw uses the next seed
    live_unavailable: str | None  # why the browser's decoder could not start; None while it runs
    end_a: np.ndarray  # (D,) float32: the interpolation's first endpoint
    end_b: np.ndarray  # (D,) float32: its last endpoint
    end_a_label: str  # what end_a is ("test image #3 (0)", "a random sample")
    end_b_label: str
    url_concept: str | None  # the concept direction as the URL gave it, until the first model takes it
    concept: Any  # explorer.concept.Concept the concept slider moves z along, or None
    controls_drawn: bool  # the session's first run has paused for the browser to draw the controls
    placeholders_sent: set  # decoder bundle ids whose server-side decode the browser has had
    map_training_image: dict | None  # the training image a hover card last asked for: {"row", "image"}
    map_selection: list  # map rows (explorer/map_data.py) of the map's last box, lasso or search selection
    # --- values widgets own
    model_choice: str  # the bundled checkpoint picked in the sidebar
    model_path: str  # a checkpoint folder typed in the sidebar
    decoder_kind: str | None  # "sharpened" or "VAE": which of a sharpened pair the page shows
    live_decoding: bool  # "Decode in the browser"
    compare: bool  # "Compare": the same z through the model's sharpened sibling (or its VAE parent) too
    view: str | None  # the view below the map (explorer.params.VIEWS); None when none is selected
    class_label: int | None  # a conditional model's class, or None while the picker is cleared
    test_index: int  # the test image "Encode it" loads
    atlas_map: Any  # what the map sent: {"clicked": {"row", "click"}, "selection": [rows], "card": {"row"}}
    map_everything: bool  # the map draws the training split too
    concept_from: str | None  # the concept's first group: a class name or explorer.concept.SELECTED
    concept_to: str | None  # its second group
    concept_t: float  # the server-side concept slider's t
    show_neighbours: bool  # "Nearest training images"
    live_latent: Any  # what the browser's controls sent: {"latent": [...], "status": str}
    source_a: str  # where "Set A" takes its endpoint: "current z", "random sample", "test image"
    source_b: str
    index_a: int  # the test image "Set A" takes
    index_b: int
    steps: int  # the interpolation's number of images
    method: str  # "slerp" or "lerp"
    traverse_columns: int  # images per row of the traversal grid
    anomaly_source: str  # "draw" or "upload"
    sketch: Any  # the drawing pad's state: {"drawing": a PNG data URL or None}
    anomaly_upload: Any  # the uploaded files (a list of UploadedFile)
    anomaly_pick: int  # the ranked upload inspected, by its position among the usable ones

    def __init__(self, store: MutableMapping) -> None:
        object.__setattr__(self, "_store", store)

    def __getattr__(self, name: str) -> Any:
        if name not in PageState.__annotations__:
            raise AttributeError(f"PageState has no key {name!r}; declare it in explorer/state.py")
        return self._store[name]

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in PageState.__annotations__:
            raise AttributeError(f"PageState has no key {name!r}; declare it in explorer/state.py")
        self._store[name] = value

    def has(self, name: str) -> bool:
        return name in self._store

    def get(self, name: str, default: Any = None) -> Any:
        """NAME's value, or DEFAULT while it has none."""
        if name not in PageState.__annotations__:
            raise AttributeError(f"PageState has no key {name!r}; declare it in explorer/state.py")
        return self._store.get(name, default)

    def drop(self, name: str) -> None:
        """Forget NAME's value (a widget then starts from its default)."""
        self._store.pop(name, None)

    # the server-side sliders' keys, one per latent: 'z1', 'z2', … (their values: floats)
    @staticmethod
    def slider_key(i: int) -> str:
        return f"z{i + 1}"

    def slider(self, i: int) -> float | None:
        return self._store.get(self.slider_key(i))

    def set_slider(self, i: int, value: float) -> None:
        self._store[self.slider_key(i)] = value

    def set_latent(self, z: np.ndarray) -> None:
        """Set the latent from Python (a button, the map, the URL): snapped to the sliders'
        grid within self.ranges, and the revision bumped so the browser's controls move."""
        low, high = self.ranges
        self.latent = snap_latent(z, low, high).astype(np.float32)
        self.latent_revision = self.get("latent_revision", 0) + 1
