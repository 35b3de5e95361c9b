"""The map's frame and spatial index, computed once per model in Python so that the browser
draws a million points without building them (frontend/atlas_map.js).

The scatterplot library (regl-scatterplot) draws points in its own coordinates, [-1, 1] across
the first view, and finds them (hover, box, lasso) through a KDBush index (github.com/mourner/
kdbush, format v1). Built in the browser, that index costs a million points about a second;
built here, it travels in the points bundle and the library reads it as it is.
"""

from __future__ import annotations

import struct

import numpy as np

FRAME = (0.01, 0.99)  # the first view frames these percentiles of the test points
FRAME_MARGIN = 1.08
FRAME_SAMPLE = 100_000  # the percentiles are taken over a stride of at most this many points
NODE_SIZE = 16  # KDBush's leaf size: the library's own
KDBUSH_MAGIC = 0xDB
KDBUSH_VERSION = 1
KDBUSH_FLOAT32 = 7  # the index of Float32Array in KDBush's list of array types


def map_frame(embedding: np.ndarray) -> tuple[float, float, float]:
    """(cx, cy, half): the square around the FRAME percentiles of EMBEDDING's (N, 2) points,
    widened by FRAME_MARGIN, so that a few far points do not shrink the rest."""
    step = max(1, len(embedding) // FRAME_SAMPLE)
    sample = np.asarray(embedding[::step], np.float64)
    ordered = np.sort(sample, axis=0)
    at = [min(len(ordered) - 1, int(q * (len(ordered) - 1))) for q in FRAME]
    (x0, y0), (x1, y1) = ordered[at[0]], ordered[at[1]]
    half = max(x1 - x0, y1 - y0, 1e-6) / 2 * FRAME_MARGIN
    return float((x0 + x1) / 2), float((y0 + y1) / 2), float(half)


def plot_positions(embedding: np.ndarray, frame: tuple[float, float, float]) -> np.ndarray:
    """(N, 2) float32: EMBEDDING's points in the library's coordinates, FRAME's square at
    [-1, 1]."""
    cx, cy, half = frame
    return ((np.asarray(embedding, np.float64) - (cx, cy)) / half).astype(np.float32)


def kdbush_index(positions: np.ndarray, node_size: int = NODE_SIZE) -> bytes:
    """KDBush's serialised index of POSITIONS (N, 2) float32, with float32 coordinates: the
    header (magic, version and array type, node size uint16, N uint32), the ids (uint16 below
    65,536 points, else uint32), padding to 8 bytes, then each id's x, y. Every node of more
    than NODE_SIZE points keeps its median (by x, then y, alternating by depth) in the middle,
    no greater points before it and no smaller after, as KDBush's own sort leaves them."""
    coords = np.ascontiguousarray(positions, "<f4").reshape(-1, 2)
    n = len(coords)
    order = np.arange(n)
    lefts, rights, axis = np.array([0]), np.array([n - 1]), 0
    while True:
        inner = rights - lefts > node_size
        lefts, rights = lefts[inner], rights[inner]
        if len(lefts) == 0:
            break
        # every inner node of this depth sorted along the axis at once: by node, then coordinate
        lengths = rights - lefts + 1
        node = np.repeat(np.arange(len(lefts)), lengths)
        at = np.repeat(lefts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        members = order[at]
        order[at] = members[np.lexsort((coords[members, axis], node))]
        middles = (lefts + rights) >> 1
        lefts = np.stack([lefts, middles + 1], axis=1).ravel()
        rights = np.stack([middles - 1, rights], axis=1).ravel()
        axis = 1 - axis
    ids = order.astype("<u2" if n < 65536 else "<u4").tobytes()
    header = struct.pack("<BBHI", KDBUSH_MAGIC, (KDBUSH_VERSION << 4) | KDBUSH_FLOAT32, node_size, n)
    return header + ids + b"\0" * (-len(ids) % 8) + coords[order].tobytes()
