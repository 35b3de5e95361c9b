"""The page's speed in a real browser (Debian's chromium via Playwright) against a real
`streamlit run app.py` server on the bundled model:

- first image: from starting the server to a decoded image on screen (the server's decode,
  drawn until the browser's decoder runs), and to the browser's first own decode;
- first image from page open: a fresh browser opening the page of a freshly started server
  (timed from its health check answering; the decoder's ONNX cache empty on the first run, kept
  on the others) and of a warm one (a second fresh browser), medians of --runs servers, each
  started as `make app` does (serve.py) and as `streamlit run app.py`;
- live decoding: distinct frames per second while dragging a latent slider and the 2-D pad,
  a key step on a slider until the image changes (p50 / p95), one decode in the browser;
- release -> Python: from releasing a drag to the new latent in the URL (the server has it);
- hovering the map: distinct frames per second while the pointer sweeps across it (no button
  pressed: each move decodes the latent under the pointer in the browser);
- map click -> controls moved;
- the fallback without WebAssembly: a server slider step until the new image (p50 / p95).

    python bench/app_latency.py [--steps 60] [--drags 3] [--clicks 10] [--runs 3]
    python bench/app_latency.py --decoders   # each bundled decoder: a decode, a slider's frames/s

Writes bench/results/app_latency.json and .md (app_latency_decoders with --decoders).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from playwright.sync_api import Browser, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import cpu_cores, write_report  # noqa: E402
from tests.browser_support import (  # noqa: E402
    CANVAS_HASH_JS,
    CHROMIUM,
    CHROMIUM_ARGS,
    FRAME_SAMPLER_START_JS,
    FRAME_SAMPLER_STOP_JS,
    LATENT_VALUES_JS,
    LIVE_READY_JS,
    MAP_READY_JS,
    NO_WEBASSEMBLY_JS,
    SERVE,
    STREAMLIT_RUN,
    drag,
    free_port,
    start_server,
)

IMAGE_SRC_JS = (
    "() => { const i = document.querySelector('[data-testid=stImage] img'); return i && i.getAttribute('src'); }"
)
URL_Z_JS = "() => new URLSearchParams(location.search).get('z')"
# the client pixel of point K's stride through the map's drawn points, and its map row
POINT_JS = """k => {
    const m = window.__latentExplorer.map, e = m.shown.embedding, row = (k * 1237) % m.shown.n;
    const [x, y] = m.toPixels([e[2 * row], e[2 * row + 1]]), box = m.canvas.getBoundingClientRect();
    return {x: box.left + x, y: box.top + y, row};
}"""
DECODE_MS_JS = """async n => {
    const hub = window.__latentExplorer.test, times = [];
    for (let k = 0; k < n; k++) {
        const z = Array.from({length: 8}, (_, i) => Math.sin(k + i));
        const t = performance.now(); await hub.decode([z]); times.push(performance.now() - t);
    }
    return times;
}"""


def percentiles(values: list[float]) -> dict[str, float]:
    return {"p50_ms": float(np.percentile(values, 50)), "p95_ms": float(np.percentile(values, 95)), "n": len(values)}


def frames_per_second(changes: list[float]) -> float:
    """Distinct frames per second from the timestamps (ms) of changed frames."""
    if len(changes) < 2:
        return 0.0
    return (len(changes) - 1) / ((changes[-1] - changes[0]) / 1000)


def measure_drags(page: object, locator: object, drags: int) -> list[float]:
    rates = []
    for k in range(drags):
        page.evaluate(FRAME_SAMPLER_START_JS)
        low, high = (0.1, 0.9) if k % 2 == 0 else (0.9, 0.1)
        drag(page, locator, low, high, moves=180)
        rates.append(frames_per_second(page.evaluate(FRAME_SAMPLER_STOP_JS)))
        time.sleep(0.5)
    return rates


def live_measures(page: object, args: argparse.Namespace) -> dict:
    slider = page.get_by_role("slider", name="z1")
    slider_fps = measure_drags(page, slider, args.drags)
    pad_fps = measure_drags(page, page.locator("canvas.lx-pad"), args.drags)

    page.get_by_role("button", name="Origin").click()  # z = 0: room to step both ways
    page.wait_for_function(f"() => ({LATENT_VALUES_JS})().every(x => x === 0)", timeout=15_000)
    time.sleep(0.5)
    step_ms = []
    slider.focus()
    for k in range(args.steps):
        before = page.evaluate(CANVAS_HASH_JS)
        started = time.perf_counter()
        page.keyboard.press("ArrowRight" if (k // 10) % 2 == 0 else "ArrowLeft")
        page.wait_for_function(f"b => ({CANVAS_HASH_JS})() !== b", arg=before, timeout=10_000, polling="raf")
        step_ms.append((time.perf_counter() - started) * 1000)
    time.sleep(1.0)

    release_ms = []
    for k in range(args.drags):
        before = page.evaluate(URL_Z_JS)
        drag(page, slider, 0.3 if k % 2 else 0.7, 0.5 + 0.05 * k, moves=10, pause_s=0.005)
        released = time.perf_counter()
        page.wait_for_function(f"b => ({URL_Z_JS})() !== b", arg=before, timeout=15_000)
        release_ms.append((time.perf_counter() - released) * 1000)
        time.sleep(0.5)

    decode_ms = page.evaluate(DECODE_MS_JS, 100)
    return {
        "slider_drag_fps": slider_fps,
        "pad_drag_fps": pad_fps,
        "key_step_to_image": percentiles(step_ms),
        "browser_decode": percentiles(decode_ms),
        "release_to_python": percentiles(release_ms),
    }


# client pixels of N + 1 points evenly along the map's view, from near one corner to near the other
MAP_SWEEP_JS = """n => {
    const m = window.__latentExplorer.map, box = m.canvas.getBoundingClientRect();
    const [[x0, x1], [y0, y1]] = [m.xScale.domain(), m.yScale.domain()];
    const points = [];
    for (let k = 0; k <= n; k++) {
        const [px, py] = m.toPixels([x0 + (x1 - x0) * (0.1 + 0.8 * k / n), y0 + (y1 - y0) * (0.1 + 0.8 * k / n)]);
        points.push([box.left + px, box.top + py]);
    }
    return points;
}"""


def show_map(page: object) -> None:
    """Scroll the map whole into the middle of the window: a pointer off screen hovers nothing."""
    page.evaluate("() => document.querySelector('.st-key-atlas_map').scrollIntoView({block: 'center'})")
    time.sleep(0.5)


def hover_measures(page: object, sweeps: int) -> tuple[list[float], float]:
    """(distinct frames per second of the decoded image while the pointer sweeps the map, mean
    ms of finding the latent under the pointer)."""
    show_map(page)
    path = page.evaluate(MAP_SWEEP_JS, 180)
    rates = []
    for k in range(sweeps):
        points = path if k % 2 == 0 else path[::-1]
        page.mouse.move(*points[0])
        page.evaluate(FRAME_SAMPLER_START_JS)
        for point in points:
            page.mouse.move(*point)
        rates.append(frames_per_second(page.evaluate(FRAME_SAMPLER_STOP_JS)))
    page.mouse.move(5, 5)
    time.sleep(0.5)
    stats = page.evaluate("() => window.__latentExplorer.test.stats")
    return rates, stats["hoverMs"] / stats["hoverMoves"]


def map_click_measures(page: object, clicks: int) -> dict | None:
    show_map(page)
    click_ms = []
    for k in range(clicks):
        target = page.evaluate(POINT_JS, k)
        page.mouse.move(target["x"] - 4, target["y"] - 4)
        page.mouse.move(target["x"], target["y"])
        try:  # the library hovers the point under the pointer on its next frame
            page.wait_for_function("() => window.__latentExplorer.map.point !== null", timeout=3_000)
        except Exception:  # noqa: BLE001 - a point drawn under others can be out of reach
            continue
        before = page.evaluate(LATENT_VALUES_JS)
        started = time.perf_counter()
        page.mouse.click(target["x"], target["y"])
        try:
            page.wait_for_function(f"b => ({LATENT_VALUES_JS})().some((x, i) => x !== b[i])", arg=before, timeout=5_000)
        except Exception:  # noqa: BLE001 - a click on an already-selected point changes nothing
            continue
        click_ms.append((time.perf_counter() - started) * 1000)
        time.sleep(0.3)
    return percentiles(click_ms) if click_ms else None


OPENED = ("fresh_server_cold_cache_s", "fresh_server_s", "warm_server_s")
FIRST_IMAGE_JS = "() => window.__latentExplorer && window.__latentExplorer.test.timing.placeholder !== null"
FIRST_DECODE_JS = "() => window.__latentExplorer && window.__latentExplorer.test.stats.draws > 0"


def page_open_to_image(browser: object, url: str) -> tuple[float, float]:
    """(s to the first decoded image on screen, s to the browser's own first decode) from
    opening URL in a fresh browser context."""
    context = browser.new_context(viewport={"width": 1400, "height": 1200})
    page = context.new_page()
    started = time.perf_counter()
    page.goto(url)
    page.wait_for_function(f"() => ({FIRST_IMAGE_JS})() || ({FIRST_DECODE_JS})()", timeout=60_000, polling="raf")
    first = time.perf_counter() - started
    page.wait_for_function(FIRST_DECODE_JS, timeout=60_000, polling="raf")
    decoded = time.perf_counter() - started
    context.close()
    return first, decoded


def first_image_measures(browser: object, runs: int, launcher: tuple[str, ...]) -> dict:
    """Page open → first image on freshly started servers and on warm ones (module docstring),
    each server started by LAUNCHER."""
    fresh, warm = [], []
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "XDG_CACHE_HOME": cache}  # empty at first: the first run exports the decoder
        for _ in range(runs):
            port = free_port()
            server = start_server(port, env=env, launcher=launcher)
            try:
                fresh.append(page_open_to_image(browser, f"http://127.0.0.1:{port}"))
                warm.append(page_open_to_image(browser, f"http://127.0.0.1:{port}"))
            finally:
                server.terminate()
                server.wait(timeout=10)
    median = lambda values: float(np.median(values))  # noqa: E731
    return {
        "fresh_server_cold_cache_s": list(fresh[0]),
        "fresh_server_s": [median([f[0] for f in fresh[1:]] or [fresh[0][0]]),
                           median([f[1] for f in fresh[1:]] or [fresh[0][1]])],
        "warm_server_s": [median([w[0] for w in warm]), median([w[1] for w in warm])],
        "runs": runs,
    }  # fmt: skip


def server_slider_measures(browser: object, url: str, steps: int) -> dict:
    """The fallback page (no WebAssembly): Streamlit's sliders, decoded on the server."""
    page = browser.new_page(viewport={"width": 1400, "height": 1200})
    page.add_init_script(NO_WEBASSEMBLY_JS)
    page.goto(url)
    page.get_by_text("decoder(z)").wait_for(timeout=60_000)
    page.wait_for_function(MAP_READY_JS, timeout=60_000)
    time.sleep(1.0)
    slider_ms = []
    sliders = page.locator("[data-testid=stSlider] input[type=range]")
    for k in range(steps):
        sliders.nth(k % 8).focus()
        before = page.evaluate(IMAGE_SRC_JS)
        started = time.perf_counter()
        page.keyboard.press("ArrowRight" if (k // 8) % 2 == 0 else "ArrowLeft")
        page.wait_for_function(f"b => ({IMAGE_SRC_JS})() !== b", arg=before, timeout=10_000)
        slider_ms.append((time.perf_counter() - started) * 1000)
        time.sleep(0.05)
    page.close()
    return percentiles(slider_ms)


def decoder_measures(browser: object, url: str, names: list[str], drags: int) -> dict:
    """For each checkpoint of NAMES: one decode in the browser (p50 / p95 of 50) and the
    distinct frames per second dragging a slider, and for one with a sharpened sibling the same
    drag with Compare on (both decoders run on every input event)."""
    results = {}
    for name in names:
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.goto(f"{url}/?model={name}")
        page.wait_for_function(LIVE_READY_JS, timeout=90_000)
        page.wait_for_function(MAP_READY_JS, timeout=60_000)
        time.sleep(1.0)
        row = {"decode": percentiles(page.evaluate(DECODE_MS_JS, 50))}
        slider = page.get_by_role("slider", name="z1")
        row["drag_fps"] = measure_drags(page, slider, drags)
        compare = page.get_by_text(re.compile(r"^Compare with the (sharpened|VAE) decoder"))
        if compare.count():
            compare.first.click()
            page.wait_for_function("() => (window.__latentExplorer.test.stats.compareDraws || 0) > 0", timeout=60_000)
            time.sleep(1.0)
            row["compare_drag_fps"] = measure_drags(page, page.get_by_role("slider", name="z1"), drags)
        results[name] = row
        page.close()
    return results


def decoders_main(args: argparse.Namespace) -> None:
    """--decoders: decoder_measures of every bundled checkpoint, into app_latency_decoders."""
    names = sorted(p.name for p in (ROOT / "checkpoints").iterdir() if (p / "config.json").is_file())
    port = free_port()
    server = start_server(port)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            results = decoder_measures(browser, f"http://127.0.0.1:{port}", names, args.drags)
            version = browser.version
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    cores = cpu_cores()
    machine = f"{platform.machine()}, {cores} cores, headless chromium {version}"
    lines = [
        f"Each bundled decoder in the browser, {time.strftime('%Y-%m-%d')}, {machine}",
        "",
        "| checkpoint | one decode, p50 / p95 | frames/s dragging a slider | with Compare on (two decoders) |",
        "|---|---|---|---|",
    ]
    for name, row in results.items():
        compared = f"{np.mean(row['compare_drag_fps']):.0f}" if "compare_drag_fps" in row else ""
        lines.append(
            f"| {name} | {row['decode']['p50_ms']:.1f} / {row['decode']['p95_ms']:.1f} ms | "
            f"{np.mean(row['drag_fps']):.0f} (min {min(row['drag_fps']):.0f}) | {compared} |"
        )
    write_report(
        args.out,
        "app_latency_decoders",
        {"date": time.strftime("%Y-%m-%d"), "machine": machine, "decoders": results},
        lines,
    )


def live_page_measures(browser: Browser, args: argparse.Namespace) -> dict:
    """A server started while a page waits for it: the seconds from the start to its first image
    (the server's decode, then the browser's), then the live measures of the page (sliders, pad,
    map) and of the fallback without WebAssembly, by the keys of the report."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    page = browser.new_page(viewport={"width": 1400, "height": 1200})
    started = time.perf_counter()
    server = start_server(port)
    try:
        page.goto(url)
        page.wait_for_function(
            "() => window.__latentExplorer && window.__latentExplorer.test.timing.placeholder !== null",
            timeout=60_000,
            polling="raf",
        )
        first_image_s = time.perf_counter() - started
        page.wait_for_function("() => window.__latentExplorer.test.stats.draws > 0", timeout=60_000, polling="raf")
        first_live_s = time.perf_counter() - started
        page.wait_for_function(MAP_READY_JS, timeout=60_000)
        time.sleep(1.0)
        live = live_measures(page, args)
        hover_fps, hover_ms = hover_measures(page, args.drags)
        clicks = map_click_measures(page, args.clicks)
        page.close()
        server_sliders = server_slider_measures(browser, url, args.steps // 2)
    finally:
        server.terminate()
        server.wait(timeout=10)
    return {
        "first_image_s": first_image_s,
        "first_browser_decode_s": first_live_s,
        **live,
        "map_hover_fps": hover_fps,
        "map_hover_latent_ms": hover_ms,
        "map_click_to_controls": clicks,
        "server_slider_to_image": server_sliders,
    }


def report_lines(result: dict) -> list[str]:
    """The markdown table of RESULT (main's record)."""
    opened, opened_streamlit = result["page_open_to_first_image"], result["page_open_to_first_image_streamlit_run"]
    fps = lambda rates: f"{np.mean(rates):.0f} (min {min(rates):.0f}, n={len(rates)} drags)"  # noqa: E731
    ms = lambda r: f"{r['p50_ms']:.0f} / {r['p95_ms']:.0f} ms (n={r['n']})"  # noqa: E731
    hover_fps = result["map_hover_fps"]
    lines = [
        f"App latency, {result['date']}, {result['machine']}",
        "",
        "| measure | result |",
        "|---|---|",
        f"| server start → first decoded image on screen | {result['first_image_s']:.2f} s |",
        f"| server start → first image decoded in the browser | {result['first_browser_decode_s']:.2f} s |",
        "| page open → first image / browser's own decode, freshly started server, decoder not yet cached | "
        f"{opened['fresh_server_cold_cache_s'][0]:.2f} / {opened['fresh_server_cold_cache_s'][1]:.2f} s |",
        f"| page open → first image / browser's own decode, freshly started server (median of {opened['runs']}) | "
        f"{opened['fresh_server_s'][0]:.2f} / {opened['fresh_server_s'][1]:.2f} s |",
        f"| page open → first image / browser's own decode, warm server (median of {opened['runs']}) | "
        f"{opened['warm_server_s'][0]:.2f} / {opened['warm_server_s'][1]:.2f} s |",
        "| the same three, the server started by `streamlit run app.py` | "
        + " · ".join(f"{opened_streamlit[k][0]:.2f} / {opened_streamlit[k][1]:.2f} s" for k in OPENED)
        + " |",
        f"| distinct frames per second, dragging a slider | {fps(result['slider_drag_fps'])} |",
        f"| distinct frames per second, dragging the 2-D pad | {fps(result['pad_drag_fps'])} |",
        f"| slider key step → new image, p50 / p95 | {ms(result['key_step_to_image'])} |",
        f"| one decode in the browser (onnxruntime-web, 1 thread), p50 / p95 | "
        f"{result['browser_decode']['p50_ms']:.1f} / {result['browser_decode']['p95_ms']:.1f} ms |",
        f"| release → latent in Python (URL updated), p50 / p95 | {ms(result['release_to_python'])} |",
        f"| distinct frames per second, hovering the map (decoding under the pointer) | "
        f"{np.mean(hover_fps):.0f} (min {min(hover_fps):.0f}, n={len(hover_fps)} sweeps) |",
        "| the latent under the pointer, found in the browser (mean per move) | "
        f"{result['map_hover_latent_ms']:.2f} ms |",
    ]
    if result["map_click_to_controls"]:
        lines.append(f"| map click → controls moved, p50 / p95 | {ms(result['map_click_to_controls'])} |")
    fallback = ms(result["server_slider_to_image"])
    return lines + [f"| fallback without WebAssembly: server slider step → new image, p50 / p95 | {fallback} |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--drags", type=int, default=3)
    parser.add_argument("--clicks", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3, help="freshly started servers for the page-open figures")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--decoders", action="store_true", help="only each bundled decoder's speed in the browser")
    args = parser.parse_args()
    if args.decoders:
        decoders_main(args)
        return

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            measured = live_page_measures(browser, args)
            opened = first_image_measures(browser, args.runs, SERVE)
            opened_streamlit = first_image_measures(browser, args.runs, STREAMLIT_RUN)
        finally:
            browser.close()

    cores = cpu_cores()
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {cores} cores, headless chromium {browser.version}",
        "first_image_s": measured.pop("first_image_s"),
        "first_browser_decode_s": measured.pop("first_browser_decode_s"),
        "page_open_to_first_image": opened,
        "page_open_to_first_image_streamlit_run": opened_streamlit,
        **measured,
    }
    write_report(args.out, "app_latency", result, report_lines(result))


if __name__ == "__main__":
    main()
