"""Helpers shared by the browser tests and bench/app_latency.py: a real `streamlit run app.py`
server, Debian's chromium, and page-side probes of the in-browser decoder."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The browser tests wait for what the page does (an element, a message, a frame, a value), never
# a fixed pause; this is only how long a busy machine may take to do it (every context's default).
STATE_WAIT_MS = 60_000
# Run before the page's own scripts: a browser without WebAssembly (chromium's
# --js-flags=--noexpose_wasm does not hide it), where the page must fall back to server sliders.
NO_WEBASSEMBLY_JS = "delete globalThis.WebAssembly;"


def open_context(
    browser: object, width: int, height: int, color_scheme: str = "light", accept_downloads: bool = False
) -> object:
    """A new browser context with a WIDTH × HEIGHT viewport, waiting up to STATE_WAIT_MS by default."""
    context = browser.new_context(
        viewport={"width": width, "height": height}, color_scheme=color_scheme, accept_downloads=accept_downloads
    )
    context.set_default_timeout(STATE_WAIT_MS)
    return context


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVE = (str(ROOT / "serve.py"),)  # what `make app` runs: streamlit run app.py, imports done first
STREAMLIT_RUN = ("-m", "streamlit", "run", str(ROOT / "app.py"))  # what a Streamlit user types


def start_server(
    port: int,
    timeout_s: float = 60,
    options: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    launcher: tuple[str, ...] = SERVE,
) -> subprocess.Popen:
    """`python serve.py` (or LAUNCHER's other command) on PORT (OPTIONS: more `--section.name value` flags;
    ENV: its environment, else this process's); returns as soon as its health check answers."""
    process = subprocess.Popen(
        [
            sys.executable,
            *launcher,
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            "true",
            *options,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = (
        options[options.index("--server.baseUrlPath") + 1].strip("/") + "/" if "--server.baseUrlPath" in options else ""
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/{base}_stcore/health", timeout=1) as r:
                if r.status == 200:
                    return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"streamlit did not start within {timeout_s:.0f} s")


# The live decoder's test hooks, kept by frontend/runtime.js on window.__latentExplorer.test.
LIVE_READY_JS = "() => !!(window.__latentExplorer && window.__latentExplorer.test.stats.draws > 0)"

# The map (frontend/atlas_map.js, kept on window.__latentExplorer.map) has drawn its points.
MAP_READY_JS = "() => !!(window.__latentExplorer && window.__latentExplorer.map && window.__latentExplorer.map.drawnAt)"
# The client pixels of map positions [[x, y], ...], through the map's own scales.
MAP_PIXELS_JS = """points => {
    const m = window.__latentExplorer.map, box = m.canvas.getBoundingClientRect();
    return points.map(p => { const [x, y] = m.toPixels(p); return [box.left + x, box.top + y]; });
}"""
# The view's extent in map coordinates: [[x0, x1], [y0, y1]].
MAP_VIEW_JS = "() => { const m = window.__latentExplorer.map; return [m.xScale.domain(), m.yScale.domain()]; }"
# The star's map position, or null before it is placed.
STAR_JS = "() => { const m = window.__latentExplorer.map; return m && m.star ? [...m.star.xy] : null; }"

# The latent controls' values (range inputs z1…zD) wherever they are: the live component's
# shadow root or Streamlit's own sliders.
LATENT_VALUES_JS = """() => {
    const found = [];
    const visit = root => {
        for (const e of root.querySelectorAll('*')) {
            if (e.matches('input[type=range]') && /^z[0-9]+$/.test(e.getAttribute('aria-label') || '')) found.push(e);
            if (e.shadowRoot) visit(e.shadowRoot);
        }
    };
    visit(document);
    return found.map(e => parseFloat(e.value));
}"""

# A hash of the decoded image's pixels (the live component's canvas), to see it change.
CANVAS_HASH_JS = """() => {
    const find = root => { for (const e of root.querySelectorAll('*')) if (e.shadowRoot) {
        const c = e.shadowRoot.querySelector('canvas.lx-image') || find(e.shadowRoot);
        if (c) return c; } return null; };
    const d = find(document).getContext('2d').getImageData(0, 0, 320, 320).data;
    let h = 0; for (let i = 0; i < d.length; i += 20) h = (Math.imul(h, 31) + d[i]) | 0; return h;
}"""

# Start sampling a decoded image (the canvas matching the selector given, else the first) once
# per animation frame; a frame counts when the pixels differ from the previous frame's. Stop
# with FRAME_SAMPLER_STOP_JS (the same selector), which returns the timestamps (ms) of the
# changed frames.
FRAME_SAMPLER_START_JS = """(wanted) => {
    const selector = wanted || 'canvas.lx-image';  // Playwright passes null for no argument
    const find = root => {
        for (const e of root.querySelectorAll('*')) {
            if (e.shadowRoot) {
                const c = e.shadowRoot.querySelector(selector) || find(e.shadowRoot);
                if (c) return c;
            }
        }
        return null;
    };
    const canvas = find(document);
    const context = canvas.getContext('2d');
    const sampler = {changes: [], last: null, running: true};
    const tick = t => {
        if (!sampler.running) return;
        const d = context.getImageData(0, 0, canvas.width, canvas.height).data;
        let h = 0;
        for (let i = 0; i < d.length; i += 20) h = (Math.imul(h, 31) + d[i]) | 0;
        if (sampler.last !== null && h !== sampler.last) sampler.changes.push(t);
        sampler.last = h;
        requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
    window.__frameSamplers = {...(window.__frameSamplers || {}), [selector]: sampler};
}"""
FRAME_SAMPLER_STOP_JS = """(wanted) => {
    const sampler = window.__frameSamplers[wanted || 'canvas.lx-image'];
    sampler.running = false;
    return sampler.changes;
}"""


def drag(
    page: object, locator: object, fraction_from: float, fraction_to: float, moves: int = 90, pause_s: float = 0.0
) -> float:
    """Drag across LOCATOR's box (an input range or the pad) from one fraction of its width to
    another, in MOVES pointer moves PAUSE_S apart; returns the drag's wall time in s.
    Chromium delivers pointer moves once per display frame and Playwright waits for each, so
    with no pause the moves arrive at up to 60 per second, as from a hand on a mouse."""
    box = locator.bounding_box()
    y = box["y"] + box["height"] / 2
    x_of = lambda f: box["x"] + box["width"] * f  # noqa: E731
    page.mouse.move(x_of(fraction_from), y)
    page.mouse.down()
    started = time.perf_counter()
    for k in range(1, moves + 1):
        page.mouse.move(x_of(fraction_from + (fraction_to - fraction_from) * k / moves), y)
        time.sleep(pause_s)
    page.mouse.up()
    return time.perf_counter() - started


# Streamlit has finished its runs (no script running or queued): before the next upload, so that
# a file chosen mid-rerun is not raced by the rerun (seen once in CI: the second upload never showed)
SCRIPT_IDLE_JS = "() => document.querySelector('[data-testid=stApp]')?.dataset.testScriptState === 'notRunning'"


def hover_map_row(page: object, xy: list[float], row: int, tries: int = 12) -> tuple[float, float]:
    """Put the pointer on map row ROW (at map position XY) until the map says it is hovered; the
    pointer's page pixels. Once seen in CI: the map moved between reading its pixels and the move,
    or its index was not built yet, and the pointer rested beside the point for good."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError  # noqa: PLC0415 - browser tests only

    for _ in range(tries):
        x, y = page.evaluate(MAP_PIXELS_JS, [list(xy)])[0]
        page.mouse.move(x - 5, y - 5)
        page.mouse.move(x, y)
        try:
            page.wait_for_function("r => window.__latentExplorer.map.point === r", arg=row, timeout=5_000)
            return x, y
        except PlaywrightTimeoutError:
            continue
    raise AssertionError(f"map row {row} was never hovered in {tries} tries")
