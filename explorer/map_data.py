"""What the map (frontend/atlas_map.js) receives on each run and what it sends back, checked.

The points themselves travel once per model as binary (explorer.live.points_bundle); a run
sends only map_payload's small JSON. A point is named by its map row: the test split's atlas
rows first (0 … N−1), then the training split's (N … N+M−1) when the map shows everything.
"""

from __future__ import annotations

import numpy as np

from explorer.atlas import Atlas

# Tableau-10: distinct, colour-blind-aware class colours.
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")


def class_colours(count: int) -> list[str]:
    """PALETTE repeated to COUNT classes (class k gets PALETTE[k % 10])."""
    return [PALETTE[k % len(PALETTE)] for k in range(count)]


def map_payload(
    points_ids: tuple[str, str | None],
    thumbnails_id: str | None,
    class_names: list[str],
    latent: np.ndarray,
    path: np.ndarray | None,
    image_shape: tuple[int, int, int],
    scatter_url: str,
    bundle_url: str,
    model_name: str,
    training_image: dict | None = None,
) -> dict:
    """The map's JSON for one run. POINTS_IDS: the test split's points bundle and the training split's
    (None while the map shows the test split only); THUMBNAILS_ID: the test images' thumbnail
    sheet's bundle, where there is one; LATENT (D,): where the star goes; PATH (P, 2): the
    interpolation's map positions, or None; SCATTER_URL: the vendored scatterplot module;
    BUNDLE_URL: where the bundles are fetched from (+ id); TRAINING_IMAGE: the training image the
    map last asked for, for its hover card, {"row": row in the training split, "image": a PNG data
    URL or None where the images are not on this machine}."""
    return {
        "points_id": points_ids[0],
        "train_points_id": points_ids[1],
        "thumbnails_id": thumbnails_id,
        "classes": list(class_names),
        "colours": class_colours(len(class_names)),
        "latent": [float(x) for x in latent],
        "path": None if path is None else [[float(x), float(y)] for x, y in path],
        "shape": [int(s) for s in image_shape],
        "scatter_url": scatter_url,
        "bundle_url": bundle_url,
        "model_name": model_name,
        "training_image": training_image,
    }


def map_size(atlas: Atlas, everything: bool) -> int:
    """How many points the map draws: the test split, or with the training split too."""
    train = atlas.train_embedding if everything else None
    return len(atlas) + (0 if train is None else len(train))


def rows_from_browser(value: object, size: int) -> list[int]:
    """The map rows a selection sent back, checked: a list of ints in [0, SIZE), in order,
    without repeats; anything else is dropped (the browser is not trusted)."""
    if not isinstance(value, list):
        return []
    return list(dict.fromkeys(r for r in value if is_row(r, size)))


def is_row(value: object, size: int) -> bool:
    """Whether VALUE is an int (not a bool) in [0, SIZE)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < size


def row_from_browser(value: object, size: int) -> int | None:
    """The row of what a click or a card sent back ({"row": int, ...}), checked against SIZE;
    None for anything else."""
    row = value.get("row") if isinstance(value, dict) else None
    return row if is_row(row, size) else None


def map_means(atlas: Atlas, rows: list[int]) -> np.ndarray:
    """The encoder means (len(ROWS), D) float32 of map ROWS: test rows from the atlas's means,
    the rest from its training means."""
    rows = np.asarray(rows, np.int64)
    n = len(atlas)
    if atlas.train_means is None or not (rows >= n).any():
        return atlas.means[rows]
    return np.concatenate([atlas.means, atlas.train_means])[rows]


def map_label(atlas: Atlas, row: int) -> int:
    """The class of map ROW."""
    n = len(atlas)
    return int(atlas.labels[row] if row < n else atlas.train_labels[row - n])


def training_row_from_browser(value: object, atlas: Atlas) -> int | None:
    """The training row a hover card asked for ({"row": int, ...}), checked; None for anything else."""
    return row_from_browser(value, 0 if atlas.train_means is None else len(atlas.train_means))
