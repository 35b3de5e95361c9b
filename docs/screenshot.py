"""The README's pictures of the page, from a real `streamlit run app.py` in headless chromium:
the page with test image #3 encoded into the sliders (docs/page.png), the anomaly view
ranking seven uploads (docs/anomaly.png): four digits the bundled model drew, written as dark
ink on light paper like scans, white noise, a photograph and a blank page; and the training
view, the bundled model's recipe and history (docs/training.png); and the map as an instrument
(docs/map.png): a concept slider from 1 to 7, the pointer on a point of class 7, its card.

    python docs/screenshot.py   # writes docs/page.png, docs/anomaly.png, docs/training.png, docs/map.png
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import training  # noqa: E402
from explorer.atlas import load_atlas  # noqa: E402
from tests.browser_support import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    LIVE_READY_JS,
    MAP_PIXELS_JS,
    MAP_READY_JS,
    SCRIPT_IDLE_JS,
    free_port,
    start_server,
)


def upload_files(folder: Path) -> list[Path]:
    """Seven images to rank: four digits decoded by the bundled model from encoded test means,
    inverted to look like scans, then noise, a photograph (scikit-learn's) and blank paper."""
    from sklearn.datasets import load_sample_images

    checkpoint = ROOT / "checkpoints" / "mnist-z8"
    model = training.load_model(checkpoint)
    means = load_atlas(str(checkpoint), model.config.latent_dim).means[[3, 2, 1, 18]]
    with torch.inference_mode():
        digits = model.decode(torch.from_numpy(means))[:, 0].numpy()
    paths = []
    for i, digit in enumerate(digits):
        paths.append(folder / f"scan-{i + 1}.png")
        Image.fromarray(255 - (digit * 255).round().astype(np.uint8)).resize((112, 112)).save(paths[-1])
    paths.append(folder / "noise.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(paths[-1])
    paths.append(folder / "photo.jpg")
    Image.fromarray(load_sample_images().images[0][100:300, 100:400]).save(paths[-1])
    paths.append(folder / "blank-page.png")
    Image.new("L", (112, 112), 235).save(paths[-1])
    return paths


def shoot_from_view(page: object, view: str, path: Path) -> None:
    """A screenshot of the page scrolled so that the view bar (VIEW selected) is at its top."""
    page.mouse.move(5, 5)  # no tooltip in the picture
    bar = page.get_by_role("radiogroup").filter(has_text=view).first
    top = bar.bounding_box()["y"] - 20
    page.evaluate("y => document.querySelector('[data-testid=stMain]').scrollBy(0, y)", top)
    time.sleep(1)
    page.screenshot(path=str(path))


def map_picture(browser: object, url: str, path: Path) -> None:
    """The concept 1 → 7 chosen, the pointer resting on a point of class 7: decoded and carded."""
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.goto(url)
    page.wait_for_function(LIVE_READY_JS, timeout=60_000)
    page.wait_for_function(MAP_READY_JS, timeout=60_000)
    for label, option in (("Concept direction from", "1"), ("to", "7")):
        page.wait_for_function(SCRIPT_IDLE_JS, timeout=30_000)
        box = page.get_by_role("combobox", name=label)
        box.scroll_into_view_if_needed()
        box.click()
        page.get_by_role("option", name=option, exact=True).click()
    page.get_by_role("slider", name="concept: 1 → 7").wait_for(timeout=30_000)
    page.evaluate("() => document.querySelector('[data-testid=stMain]').scrollTo(0, 0)")
    time.sleep(1)
    atlas = load_atlas(ROOT / "checkpoints" / "mnist-z8", 8)
    row = int(np.flatnonzero(atlas.labels == 7)[40])
    x, y = page.evaluate(MAP_PIXELS_JS, [atlas.embedding[row].tolist()])[0]
    page.mouse.move(x - 6, y - 6)
    page.mouse.move(x, y)
    page.wait_for_function("() => window.__latentExplorer.map.card.node.style.display === 'flex'", timeout=15_000)
    time.sleep(1.5)
    page.screenshot(path=str(path))
    page.close()


def main() -> None:
    out = ROOT / "docs" / "page.png"
    port = free_port()
    server = start_server(port)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1050})
            page.goto(f"http://127.0.0.1:{port}")
            page.wait_for_function(LIVE_READY_JS, timeout=60_000)
            page.wait_for_function(MAP_READY_JS, timeout=60_000)
            page.get_by_label("Test image #", exact=True).fill("3")
            page.get_by_role("button", name="Encode it").click()
            page.mouse.move(5, 5)  # no tooltip in the picture
            time.sleep(3)  # the rerun, the controls, the star and the pad's preview
            page.screenshot(path=str(out))

            with tempfile.TemporaryDirectory() as folder:
                page.goto(f"http://127.0.0.1:{port}/?view=anomaly")
                page.wait_for_function(LIVE_READY_JS, timeout=60_000)
                page.get_by_text("upload", exact=True).click()
                page.locator("input[type=file]").set_input_files([str(p) for p in upload_files(Path(folder))])
                table = page.locator("[data-testid=stDataFrame]")
                table.wait_for(timeout=30_000)
                time.sleep(3)  # the latent of the most anomalous loaded, the map's star moved
                shoot_from_view(page, "Anomaly", ROOT / "docs" / "anomaly.png")

            page.goto(f"http://127.0.0.1:{port}/?model=mnist-z8&view=training")  # the VAE: its ELBO history
            page.wait_for_function(LIVE_READY_JS, timeout=60_000)
            chart = page.locator(".js-plotly-plot").filter(has_text="test −ELBO")
            chart.wait_for(timeout=30_000)
            time.sleep(2)
            shoot_from_view(page, "Training", ROOT / "docs" / "training.png")
            map_picture(browser, f"http://127.0.0.1:{port}", ROOT / "docs" / "map.png")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"wrote {out} and anomaly.png, training.png, map.png beside it")


if __name__ == "__main__":
    main()
