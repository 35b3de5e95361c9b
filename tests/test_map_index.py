"""The map's frame and the spatial index Python builds for the scatterplot library."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from explorer.map_index import NODE_SIZE, kdbush_index, map_frame, plot_positions


def read_kdbush(data: bytes) -> tuple[int, np.ndarray, np.ndarray]:
    """(node size, ids (N,), coords (N, 2)) of a serialised KDBush index, as KDBush.from reads it."""
    magic, version_and_type, node_size, n = struct.unpack_from("<BBHI", data)
    assert magic == 0xDB and version_and_type >> 4 == 1 and version_and_type & 15 == 7  # v1, Float32Array
    id_type = np.dtype("<u2" if n < 65536 else "<u4")
    ids = np.frombuffer(data, id_type, n, 8)
    start = 8 + n * id_type.itemsize + (-n * id_type.itemsize) % 8
    coords = np.frombuffer(data, "<f4", 2 * n, start).reshape(n, 2)
    assert len(data) == start + 8 * n
    return node_size, ids, coords


def kdbush_range(data: bytes, box: tuple[float, float, float, float]) -> list[int]:
    """KDBush's range query (its JavaScript, line for line): the ids inside BOX (x0, y0, x1, y1)."""
    node_size, ids, coords = read_kdbush(data)
    x0, y0, x1, y1 = box
    found, stack = [], [(0, len(ids) - 1, 0)]
    while stack:
        left, right, axis = stack.pop()
        if right - left <= node_size:
            found += [
                int(ids[i]) for i in range(left, right + 1) if x0 <= coords[i, 0] <= x1 and y0 <= coords[i, 1] <= y1
            ]
            continue
        m = (left + right) >> 1
        x, y = coords[m]
        if x0 <= x <= x1 and y0 <= y <= y1:
            found.append(int(ids[m]))
        if (x0 if axis == 0 else y0) <= (x if axis == 0 else y):
            stack.append((left, m - 1, 1 - axis))
        if (x1 if axis == 0 else y1) >= (x if axis == 0 else y):
            stack.append((m + 1, right, 1 - axis))
    return sorted(found)


@pytest.mark.parametrize("n", [1, 16, 17, 1000, 70_000])
def test_the_index_finds_exactly_the_points_in_a_box(n: int) -> None:
    rng = np.random.default_rng(n)
    positions = rng.normal(size=(n, 2)).astype(np.float32)
    positions[: n // 10] = positions[0]  # repeated points: ties at the medians
    data = kdbush_index(positions)
    node_size, ids, coords = read_kdbush(data)
    assert node_size == NODE_SIZE and sorted(ids.tolist()) == list(range(n))
    assert np.array_equal(coords, positions[ids])  # each id's own coordinates, bit for bit
    for box in [(-0.5, -0.5, 0.5, 0.5), (0.0, -3.0, 3.0, 0.1), (-9.0, -9.0, 9.0, 9.0), (5.0, 5.0, 6.0, 6.0)]:
        x0, y0, x1, y1 = box
        inside = (positions[:, 0] >= x0) & (positions[:, 0] <= x1) & (positions[:, 1] >= y0) & (positions[:, 1] <= y1)
        assert kdbush_range(data, box) == np.flatnonzero(inside).tolist()


def test_the_map_frames_the_middle_98_percent_of_its_points() -> None:
    rng = np.random.default_rng(4)
    embedding = np.concatenate([rng.uniform(-1, 1, size=(990, 2)), rng.uniform(500, 900, size=(10, 2))])
    cx, cy, half = map_frame(embedding.astype(np.float32))
    # ten far points (1%) no longer set the range: the frame is the cluster's, with its margin
    assert abs(cx) < 0.1 and abs(cy) < 0.1 and 0.9 < half < 1.2
    positions = plot_positions(embedding, (cx, cy, half))
    assert positions.dtype == np.float32 and np.mean(np.abs(positions).max(axis=1) <= 1) == pytest.approx(
        0.99, abs=0.01
    )
