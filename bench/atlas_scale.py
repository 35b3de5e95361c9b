"""The atlas at scale: UMAP time for 10,000 and 70,000 encoded MNIST images (test, then
train + test) with the installed backend (cuML on a GPU when present, umap-learn otherwise),
and the map marker's placement time for an atlas of each size, in Python
(explorer.atlas.place_on_map) and in the browser (frontend/latent.js, run in headless chromium);
then placement alone on synthetic 8-d atlases of 300,000 and 1,000,000 points, past any data
set here, since placement is O(N·D) and must stay under 50 ms whatever the atlas size.

    python bench/atlas_scale.py checkpoints/mnist-z8 --data-dir ../shared/data/mnist

Writes bench/results/atlas_scale.json and .md.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import training  # noqa: E402
from bench.report import cpu_cores, write_report  # noqa: E402
from explorer.atlas import Atlas, place_on_map  # noqa: E402
from tests.browser_support import CHROMIUM, CHROMIUM_ARGS, LIVE_READY_JS, free_port, start_server  # noqa: E402
from training.atlas import umap_backend, umap_embedding  # noqa: E402
from training.data import load_dataset  # noqa: E402
from training.evaluate import encode_dataset  # noqa: E402

# Replace the page's atlas with a synthetic one of N points, then time the browser's placement.
BROWSER_PLACE_JS = """async ([n, d, repeats]) => {
    const hub = window.__latentExplorer.test, bundle = hub.active.bundle;
    const means = new Float32Array(n * d), embedding = new Float32Array(n * 2);
    for (let i = 0; i < means.length; i++) means[i] = Math.sin(i * 12.9898) * 3;
    for (let i = 0; i < embedding.length; i++) embedding[i] = Math.cos(i * 78.233) * 10;
    const saved = [bundle.n, bundle.means, bundle.embedding];
    Object.assign(bundle, {n, means, embedding});
    const times = [];
    for (let k = 0; k < 10; k++) hub.place(Array.from({length: d}, (_, j) => Math.cos(k + j)));  // JIT warm-up
    for (let k = 0; k < repeats; k++) {
        const z = Array.from({length: d}, (_, j) => Math.sin(k + j));
        const t = performance.now(); hub.place(z); times.push(performance.now() - t);
    }
    [bundle.n, bundle.means, bundle.embedding] = saved;
    return times;
}"""


def python_place_ms(means: np.ndarray, repeats: int = 50) -> list[float]:
    atlas = Atlas(
        means=means,
        labels=np.zeros(len(means), np.int64),
        embedding=np.random.default_rng(0).normal(size=(len(means), 2)).astype(np.float32),
        index=np.arange(len(means)),
    )
    rng = np.random.default_rng(1)
    times = []
    for _ in range(repeats):
        z = rng.standard_normal(means.shape[1]).astype(np.float32)
        started = time.perf_counter()
        place_on_map(atlas, z)
        times.append((time.perf_counter() - started) * 1000)
    return times


def browser_place_ms(sizes: list[int], d: int, repeats: int = 50) -> dict[int, list[float]]:
    from playwright.sync_api import sync_playwright

    port = free_port()
    server = start_server(port)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}")
            page.wait_for_function(LIVE_READY_JS, timeout=60_000)
            page.wait_for_function("() => window.__latentExplorer.test.active.bundle", timeout=60_000)
            result = {n: page.evaluate(BROWSER_PLACE_JS, [n, d, repeats]) for n in sizes}
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    return result


def placement_row(means: np.ndarray, browser_ms: list[float], umap_seconds: float | None) -> dict:
    """A row of the report for MEANS (points, latent_dim): UMAP's time (None: synthetic means, no
    UMAP) and the p95 of placing a marker among them in Python and (BROWSER_MS) in the browser."""
    row = {
        "points": len(means),
        **({"synthetic": True} if umap_seconds is None else {}),
        "umap_seconds": umap_seconds,
        "place_python_ms_p95": float(np.percentile(python_place_ms(means), 95)),
        "place_browser_ms_p95": float(np.percentile(browser_ms, 95)),
    }
    print(row, flush=True)
    return row


def report_lines(result: dict) -> list[str]:
    """The markdown report of RESULT (main's record): a row per atlas size."""
    lines = [
        f"Atlas at scale, {result['date']}, {result['machine']}, UMAP by {result['backend']} (after a "
        f"1,000-point first run of {result['first_run_1000_points_s']:.1f} s that compiles it)",
        "",
        "| points | UMAP | marker placement p95, Python | marker placement p95, browser |",
        "|---|---|---|---|",
    ]
    for r in result["rows"]:
        points = f"{r['points']:,}" + (" (synthetic, placement only)" if r.get("synthetic") else "")
        umap_cell = "—" if r["umap_seconds"] is None else f"{r['umap_seconds']:.1f} s"
        lines.append(
            f"| {points} | {umap_cell} | {r['place_python_ms_p95']:.2f} ms | {r['place_browser_ms_p95']:.2f} ms |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--data-dir")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()

    model = training.load_model(args.checkpoint)
    train, test = load_dataset("mnist", args.data_dir)
    means = encode_dataset(model, torch.cat([test.images, train.images]))[0].numpy()
    backend = umap_backend()
    started = time.perf_counter()
    umap_embedding(means[:1000], backend=backend)  # numba compiles umap-learn on its first run
    warm_up_s = time.perf_counter() - started
    rows = []
    synthetic_sizes = [300_000, 1_000_000]
    browser = browser_place_ms([10_000, len(means), *synthetic_sizes], means.shape[1])
    for n in (10_000, len(means)):
        started = time.perf_counter()
        umap_embedding(means[:n], backend=backend)
        rows.append(placement_row(means[:n], browser[n], umap_seconds=time.perf_counter() - started))
    for n in synthetic_sizes:  # no UMAP: placement only, on random means
        synthetic = np.random.default_rng(n).standard_normal((n, means.shape[1])).astype(np.float32)
        rows.append(placement_row(synthetic, browser[n], umap_seconds=None))
    cores = cpu_cores()
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {cores} cores, no GPU"
        if not torch.cuda.is_available()
        else torch.cuda.get_device_name(),
        "backend": backend,
        "first_run_1000_points_s": warm_up_s,
        "rows": rows,
    }
    write_report(args.out, "atlas_scale", result, report_lines(result))


if __name__ == "__main__":
    main()
