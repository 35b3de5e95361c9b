"""The map at scale, in headless chromium against a real server on the bundled model: the
page's map is given synthetic atlases of 10,000 to 1,000,000 points (ten clusters inside the
real map's frame, 8-d means) and for each we time its drawing (the points handed to the map ->
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
from tests.browser_support import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    LIVE_READY_JS,
    MAP_READY_JS,
    free_port,
    start_server,
)

# N synthetic points of D dimensions in ten clusters inside the map's frame, handed to the map;
# returns ms until they are drawn and two frames have passed.
SYNTHETIC_MAP_JS = """async ([n, d]) => {
    const m = window.__latentExplorer.map, {cx, cy, half} = m.frame;
    const means = new Float32Array(n * d), embedding = new Float32Array(n * 2);
    const labels = new Int32Array(n), index = new Int32Array(n);
    let seed = 1;
    const rand = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 4294967296;
    for (let i = 0; i < n; i++) {
        const k = i % 10, angle = (k / 10) * 2 * Math.PI;
        labels[i] = k; index[i] = i;
        embedding[2 * i] = cx + half * (0.55 * Math.cos(angle) + 0.12 * (rand() + rand() + rand() - 1.5));
        embedding[2 * i + 1] = cy + half * (0.55 * Math.sin(angle) + 0.12 * (rand() + rand() + rand() - 1.5));
        for (let j = 0; j < d; j++) means[i * d + j] = 2 * Math.sin(angle * (j + 1)) + 0.3 * (rand() - 0.5);
    }
    const bundle = {n, d, means, embedding, labels, index, names: null};
    const started = performance.now();
    await m.setLayers([{split: "test", id: `synthetic-${n}`, sheetId: null, bundle}]);
    await new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)));
    return performance.now() - started;
}"""


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
            for n in sizes:
                draw_ms = page.evaluate(SYNTHETIC_MAP_JS, [n, 8])
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
