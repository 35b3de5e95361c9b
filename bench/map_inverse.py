"""Which inverse of the map the hover should use: the latent under a map position from the
inverse-distance-weighted mean of its k nearest points' means (frontend/latent.js
latentAtMapPoint, here in numpy), or umap-learn's own inverse_transform.

UMAP is fitted on 9,000 of a checkpoint's encoded test means and the other 1,000 are placed on
its map (transform); each method then maps those positions back to latents:
- accuracy: the distance from the recovered latent to the held-out image's own mean;
- smoothness: on a 60 × 60 grid over the map, the latent distance between neighbouring cells
  (median and 99th percentile: a jump is a seam where the decode changes abruptly);
- time per position.

    python bench/map_inverse.py [--checkpoint checkpoints/mnist-z8]

Writes bench/results/map_inverse.json and .md.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import write_report  # noqa: E402
from explorer.atlas import load_atlas  # noqa: E402
from training.atlas import UMAP_PARAMETERS  # noqa: E402

GRID = 60
# (k, power); the page's, in frontend/latent.js latentAtMapPoint, is (32, 1)
IDW_VARIANTS = ((8, 2), (16, 2), (32, 2), (16, 1), (32, 1), (64, 1))


def idw_inverse(
    embedding: np.ndarray, means: np.ndarray, positions: np.ndarray, k: int = 8, power: float = 2
) -> np.ndarray:
    """(P, 2) map positions -> (P, D): latentAtMapPoint's rule, 1/d^power weights over the k nearest."""
    out = np.empty((len(positions), means.shape[1]), np.float64)
    for i, position in enumerate(positions):
        d2 = np.sum((embedding - position) ** 2, axis=1)
        nearest = np.argpartition(d2, k - 1)[:k]
        if d2[nearest].min() < 1e-18:
            out[i] = means[nearest[np.argmin(d2[nearest])]]
            continue
        weights = d2[nearest] ** (-power / 2)
        out[i] = weights @ means[nearest] / weights.sum()
    return out


def neighbour_steps(latents: np.ndarray) -> np.ndarray:
    """Latent distances between horizontally and vertically neighbouring cells of a GRID × GRID grid."""
    grid = latents.reshape(GRID, GRID, -1)
    across = np.linalg.norm(np.diff(grid, axis=1), axis=-1).ravel()
    down = np.linalg.norm(np.diff(grid, axis=0), axis=-1).ravel()
    return np.concatenate([across, down])


def measure(name: str, inverse: object, held_positions: np.ndarray, held_means: np.ndarray, grid: np.ndarray) -> dict:
    started = time.perf_counter()
    recovered = inverse(held_positions)
    seconds = time.perf_counter() - started
    errors = np.linalg.norm(recovered - held_means, axis=1)
    steps = neighbour_steps(inverse(grid))
    return {
        "method": name,
        "error_median": float(np.median(errors)),
        "error_p90": float(np.percentile(errors, 90)),
        "step_median": float(np.median(steps)),
        "step_p99": float(np.percentile(steps, 99)),
        "ms_per_position": 1000 * seconds / len(held_positions),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "mnist-z8"))
    parser.add_argument("--held-out", type=int, default=1000)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    import umap  # noqa: PLC0415 - numba compiles for a while

    means = load_atlas(args.checkpoint, 8).means.astype(np.float64)
    order = np.random.default_rng(0).permutation(len(means))
    held, kept = order[: args.held_out], order[args.held_out :]
    started = time.perf_counter()
    reducer = umap.UMAP(**UMAP_PARAMETERS, random_state=0).fit(means[kept])
    fit_s = time.perf_counter() - started
    embedding = reducer.embedding_.astype(np.float64)
    held_positions = reducer.transform(means[held]).astype(np.float64)
    low, high = embedding.min(axis=0), embedding.max(axis=0)
    xs, ys = np.meshgrid(np.linspace(low[0], high[0], GRID), np.linspace(low[1], high[1], GRID))
    grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
    rows = [
        measure(f"inverse-distance weights 1/d^{power:g}, k = {k}",
                lambda p, k=k, power=power: idw_inverse(embedding, means[kept], p, k, power),
                held_positions, means[held], grid)
        for k, power in IDW_VARIANTS
    ] + [
        measure("umap-learn inverse_transform", lambda p: np.asarray(reducer.inverse_transform(p), np.float64),
                held_positions, means[held], grid),
    ]  # fmt: skip
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "checkpoint": Path(args.checkpoint).name,
        "fit_seconds": fit_s,
        "rows": rows,
    }
    lines = [
        f"Map inverse, {result['date']}, {Path(args.checkpoint).name}: UMAP fitted on {len(kept):,} test means "
        f"({fit_s:.0f} s), {len(held):,} held out; smoothness on a {GRID} × {GRID} grid",
        "",
        "| method | error to the held-out mean, median / p90 | step between grid cells, median / p99 | ms each |",
        "|---|---|---|---|",
        *(
            f"| {r['method']} | {r['error_median']:.3f} / {r['error_p90']:.3f} | "
            f"{r['step_median']:.3f} / {r['step_p99']:.3f} | {r['ms_per_position']:.2f} |"
            for r in rows
        ),
    ]
    write_report(args.out, "map_inverse", result, lines)


if __name__ == "__main__":
    main()
