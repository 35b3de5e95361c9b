"""What a view below the map is given: the model shown and what the page holds for it, so
that no view reads the session for them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import training
from explorer.atlas import Atlas


@dataclass(frozen=True)
class ViewContext:
    folder: str  # the checkpoint folder the page shows
    model: training.ConvVAE
    atlas: Atlas | None  # its atlas, None when it has none
    # (folder, model) of each decoder the page draws with: the model's own, and with Compare on
    # its sharpened sibling (or its VAE parent)
    decoders: tuple[tuple[str, training.ConvVAE], ...]
    z: np.ndarray  # (D,) float32: the current latent
    live: bool  # the browser decodes as the controls move (else the server's sliders)
    class_names: tuple[str, ...]
