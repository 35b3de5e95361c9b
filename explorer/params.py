"""The page's shareable state in the URL's query parameters, validated and clamped.

?model=mnist-z8&z=0.12,-1.30,...&view=interpolate
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

VIEWS = ("interpolate", "traverse", "anomaly", "training")
MAX_PARAM_CHARS = 2000


@dataclass
class Link:
    """What a link asks for: a model by name, a view, and the warnings for what it got wrong."""

    model: str | None
    z: np.ndarray | None  # (D,) float32 within the slider ranges, or None for the default
    view: str
    warnings: list[str] = field(default_factory=list)


def format_latent(z: np.ndarray) -> str:
    return ",".join(f"{float(v):.3f}" for v in z)


def parse_latent(text: str, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray | None, list[str]]:
    """'a,b,...' -> (D,) clamped into [low, high]; None and a warning for anything unusable."""
    d = len(low)
    if len(text) > MAX_PARAM_CHARS:
        return None, [f"The latent in the link is too long ({len(text)} characters); using the origin."]
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != d:
        return None, [f"The link gives {len(parts)} latent values but this model has {d}; using the origin."]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        return None, ["The latent in the link is not a list of numbers; using the origin."]
    if not all(math.isfinite(v) for v in values):
        return None, ["The latent in the link holds NaN or infinity; using the origin."]
    z = np.asarray(values, np.float64)  # clamp before narrowing: 1e308 must not overflow
    clamped = np.clip(z, low, high)
    warnings = []
    if not np.array_equal(clamped, z):  # compared in float64: 0.6 is not exact in float32
        warnings.append("Some latent values in the link were outside the sliders' range and were clamped.")
    return clamped.astype(np.float32), warnings


def parse_link(params: dict[str, str], model_names: list[str], default_model: str | None) -> Link:
    """Model and view from the URL. A model is chosen by name only from MODEL_NAMES: no path
    from a URL is ever opened. The latent is parsed later, once the model's ranges are known."""
    warnings: list[str] = []
    model = params.get("model")
    if model is not None and model not in model_names:
        warnings.append(f"The link names a model that is not here ({model[:40]!r}); showing {default_model}.")
        model = None
    view = params.get("view", VIEWS[0])
    if view not in VIEWS:
        warnings.append(f"Unknown view {view[:40]!r} in the link; showing {VIEWS[0]}.")
        view = VIEWS[0]
    return Link(model=model or default_model, z=None, view=view, warnings=warnings)
