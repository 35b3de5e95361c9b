"""The map at scale, in headless chromium against a real server on the bundled model: the
page's map is given synthetic atlases of 10,000 to 1,000,000 points (ten clusters, 8-d means,
packed by the page's own explorer.live.points_bundle with its frame and spatial index, fetched
and parsed by the page) and for each we time its drawing (the parsed points handed to the map ->
drawn, two animation frames later) and, while the pointer sweeps across the map (each move
decodes the latent under the pointer), the frames the page draws per second and the images
the controls decode and draw per second (synthetic means change little between neighbouring
points, so frames whose image changed, app_latency's measure, undercount here).

    python bench/map_scale.py [--sizes 10000,70000,300000,1000000] [--sweeps 3]

Writes bench/results/map_scale.json and .md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.app_latency import MAP_SWEEP_JS, show_map  # noqa: E402
from bench.report import write_report  # noqa: E402
from explorer.live import points_bundle  # noqa: E402
from tests.browser_support import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    LIVE_READY_JS,
    MAP_READY_JS,
    free_port,
    start_server,
)

BUNDLE_URL = "http://127.0.0.1/synthetic-atlas"  # answered by the benchmark, not the server
CORS = {"Access-Control-Allow-Origin": "*", "Content-Type": "application/octet-stream"}

# The synthetic bundle at BUNDLE_URL fetched and parsed, then handed to the map showing the
# model's own test split (as a user would switch to it); returns ms until it is drawn and two
# frames have passed.
SYNTHETIC_MAP_JS = """async ([url, n]) => {
    const m = window.__latentExplorer.map;
    const bundle = window.__latentExplorer.test.parse(new Uint8Array(await (await fetch(url)).arrayBuffer()));
    window.__modelLayers = window.__modelLayers || m.layers;
    if (m.layers !== window.__modelLayers) await m.setLayers(window.__modelLayers);
    await new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)));
    const started = performance.now();
    await m.setLayers([{split: "test", id: `synthetic-${n}`, sheetId: null, bundle}]);
    await new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)));
    return performance.now() - started;
}"""


def synthetic_bundle(n: int, d: int = 8, seed: int = 1) -> bytes:
    """A points bundle of N points in ten clusters on a ring, their D-d means varying with the
    angle, as explorer.live.points_bundle packs an atlas."""
    rng = np.random.default_rng(seed)
    k = np.arange(n) % 10
    angle = k / 10 * 2 * np.pi
    spread = 0.12 * (rng.random((n, 2)) + rng.random((n, 2)) + rng.random((n, 2)) - 1.5)
    embedding = np.stack([np.cos(angle), np.sin(angle)], axis=1) * 0.55 + spread
    means = 2 * np.sin(angle[:, None] * np.arange(1, d + 1)) + 0.3 * (rng.random((n, d)) - 0.5)
    return points_bundle(means.astype(np.float32), embedding.astype(np.float32), k, np.arange(n))[1]


# Start counting animation frames and decoded images; STOP returns [frames, images, seconds].
SWEEP_COUNT_START_JS = """() => {
    const stats = window.__latentExplorer.test.stats, sweep = {frames: 0, draws: stats.draws, start: performance.now()};
    window.__sweep = sweep;
    const tick = () => { if (window.__sweep !== sweep) return; sweep.frames += 1; requestAnimationFrame(tick); };
    requestAnimationFrame(tick);
}"""
SWEEP_COUNT_STOP_JS = """() => {
    const sweep = window.__sweep, stats = window.__latentExplorer.test.stats;
    window.__sweep = null;
    return [sweep.frames, stats.draws - sweep.draws, (performance.now() - sweep.start) / 1000];
}"""


def sweep_rates(page: object, sweeps: int) -> list[tuple[float, float]]:
    """(frames drawn per second, images decoded and drawn per second) over each sweep."""
    path = page.evaluate(MAP_SWEEP_JS, 180)
    rates = []
    for k in range(sweeps):
        points = path if k % 2 == 0 else path[::-1]
        page.mouse.move(*points[0])
        page.evaluate(SWEEP_COUNT_START_JS)
        for point in points:
            page.mouse.move(*point)
        frames, images, seconds = page.evaluate(SWEEP_COUNT_STOP_JS)
        rates.append((frames / seconds, images / seconds))
    page.mouse.move(5, 5)
    return rates


def measure(sizes: list[int], sweeps: int) -> list[dict]:
    port = free_port()
    server = start_server(port)
    rows = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.goto(f"http://127.0.0.1:{port}")
            page.wait_for_function(LIVE_READY_JS, timeout=60_000)
            page.wait_for_function(MAP_READY_JS, timeout=60_000)
            show_map(page)
            served = {}
            page.route(BUNDLE_URL, lambda route: route.fulfill(body=served["bundle"], headers=CORS))
            for n in sizes:
                served["bundle"] = synthetic_bundle(n)
                draw_ms = page.evaluate(SYNTHETIC_MAP_JS, [BUNDLE_URL, n])
                rates = sweep_rates(page, sweeps)
                rows.append({"points": n, "draw_ms": draw_ms, "hover_frames_per_s": rates})
                print(rows[-1], flush=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,70000,300000,1000000")
    parser.add_argument("--sweeps", type=int, default=3)
    args = parser.parse_args()
    rows = measure([int(n) for n in args.sizes.split(",")], args.sweeps)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, headless Debian chromium (no GPU)",
        "rows": rows,
    }
    lines = [
        f"The map at scale, {result['date']}, {result['machine']}",
        "",
        "| points | drawn in | hovering: frames drawn / images decoded per second (median of sweeps) |",
        "|---|---|---|",
        *[
            f"| {r['points']:,} | {r['draw_ms']:.0f} ms | "
            f"{np.median([f for f, _ in r['hover_frames_per_s']]):.0f} / "
            f"{np.median([i for _, i in r['hover_frames_per_s']]):.0f} |"
            for r in rows
        ],
    ]
    write_report(ROOT / "bench" / "results", "map_scale", result, lines)


if __name__ == "__main__":
    main()
