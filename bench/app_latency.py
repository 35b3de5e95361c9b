"""The page's latency in a real browser (Debian's chromium via Playwright) against a real
`streamlit run app.py` server on the bundled model:

- first image: from starting the server to the decoded image on screen;
- slider -> image: one keyboard step on a latent slider until the image's src changes
  (p50 / p95 over --moves changes);
- map click -> sliders: a click on a map point until the slider values change.

    python bench/app_latency.py [--moves 60] [--clicks 10]

Writes bench/results/app_latency.json and .md.
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
IMAGE_SRC_JS = "() => { const i = document.querySelector('[data-testid=stImage] img'); return i && i.getAttribute('src'); }"
SLIDERS_JS = """() => [...document.querySelectorAll('[data-testid=stSlider] input[type=range]')]
    .filter(e => /^z[0-9]+$/.test(e.getAttribute('aria-label'))).map(e => e.value).join(',')"""
POINT_JS = """k => {
    const plot = document.querySelector('.js-plotly-plot');
    const traces = plot._fullData.filter(t => t.type === 'scattergl');
    const t = traces[k % traces.length];
    const box = plot.querySelector('.nsewdrag').getBoundingClientRect();
    const i = (k * 37) % t._length;
    return {x: box.left + plot._fullLayout.xaxis.l2p(t.x[i]), y: box.top + plot._fullLayout.yaxis.l2p(t.y[i])};
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentiles(values: list[float]) -> dict[str, float]:
    return {"p50_ms": float(np.percentile(values, 50)), "p95_ms": float(np.percentile(values, 95)),
            "n": len(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=60)
    parser.add_argument("--clicks", type=int, default=10)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        started = time.perf_counter()
        server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                                   "--server.headless", "true"], cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:  # poll until the server answers, then load the page at once
                try:
                    urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            page.goto(url)
            page.wait_for_function(f"() => ({IMAGE_SRC_JS})() !== null", timeout=60_000)
            first_image_s = time.perf_counter() - started
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
            time.sleep(1.0)

            slider_ms = []
            slider = page.locator("[data-testid=stSlider] input[type=range]")
            for k in range(args.moves):
                slider.nth(k % 8).focus()
                before = page.evaluate(IMAGE_SRC_JS)
                t0 = time.perf_counter()
                page.keyboard.press("ArrowRight" if (k // 8) % 2 == 0 else "ArrowLeft")
                page.wait_for_function(f"b => ({IMAGE_SRC_JS})() !== b", arg=before, timeout=10_000)
                slider_ms.append((time.perf_counter() - t0) * 1000)
                time.sleep(0.05)

            click_ms = []
            for k in range(args.clicks):
                target = page.evaluate(POINT_JS, k)
                page.mouse.move(target["x"] - 4, target["y"] - 4)
                page.mouse.move(target["x"], target["y"])
                page.wait_for_function("() => (document.querySelector('.js-plotly-plot')._hoverdata || []).length > 0",
                                       timeout=5_000)
                before = page.evaluate(SLIDERS_JS)
                t0 = time.perf_counter()
                page.mouse.click(target["x"], target["y"])
                try:
                    page.wait_for_function(f"b => ({SLIDERS_JS})() !== b", arg=before, timeout=5_000)
                except Exception:  # noqa: BLE001 - a click on an already-selected point changes nothing
                    continue
                click_ms.append((time.perf_counter() - t0) * 1000)
                time.sleep(0.3)
        finally:
            browser.close()
            server.terminate()
            server.wait(timeout=10)

    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores, headless chromium",
        "first_image_s": first_image_s,
        "slider_to_image": percentiles(slider_ms),
        "map_click_to_sliders": percentiles(click_ms) if click_ms else None,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "app_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"App latency, {result['date']}, {result['machine']}",
        "",
        "| measure | result |",
        "|---|---|",
        f"| server start → first decoded image | {first_image_s:.2f} s |",
        f"| slider step → new image, p50 / p95 (n={len(slider_ms)}) | "
        f"{result['slider_to_image']['p50_ms']:.0f} / {result['slider_to_image']['p95_ms']:.0f} ms |",
    ]
    if click_ms:
        lines.append(f"| map click → sliders moved, p50 / p95 (n={len(click_ms)}) | "
                     f"{result['map_click_to_sliders']['p50_ms']:.0f} / {result['map_click_to_sliders']['p95_ms']:.0f} ms |")
    (out / "app_latency.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
