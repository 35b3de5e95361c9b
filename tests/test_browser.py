"""End to end in a real browser: Debian's chromium driven by Playwright against a real
`streamlit run app.py` server on the bundled model."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make test installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int) -> subprocess.Popen:
    """`streamlit run app.py` on PORT; returns once its health check answers."""
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as r:
                if r.status == 200:
                    return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("streamlit did not start within 60 s")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = free_port()
    process = start_server(port)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: object, server: str) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1400, "height": 1200}, accept_downloads=True)
    page = context.new_page()
    page.goto(server)
    page.get_by_text("decoder(z)").wait_for(timeout=30_000)
    page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
    yield page
    try:  # whatever a test did, the page never shows a traceback
        assert page.locator("[data-testid=stException]").count() == 0
    finally:
        context.close()


def decoded_image_src(page: object) -> str:
    return page.locator("[data-testid=stImage] img").first.get_attribute("src")


LATENT_INPUTS_JS = """() => [...document.querySelectorAll('[data-testid=stSlider] input[type=range]')]
    .filter(e => /^z[0-9]+$/.test(e.getAttribute('aria-label'))).map(e => parseFloat(e.value))"""


def latent_values(page: object) -> list[float]:
    """The eight latent sliders' values, as the browser holds them."""
    return page.evaluate(LATENT_INPUTS_JS)


def test_page_loads_with_eight_sliders_and_no_error(page: object, tmp_path: Path) -> None:
    assert page.locator("[data-testid=stException]").count() == 0
    labels = page.locator("[data-testid=stSlider] [data-testid=stWidgetLabel]").all_inner_texts()
    assert labels[:8] == [f"z{i}" for i in range(1, 9)]
    assert latent_values(page) == [0.0] * 8
    src = decoded_image_src(page)
    assert src and "/media/" in src
    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one


def test_moving_a_slider_changes_the_picture(page: object) -> None:
    before = decoded_image_src(page)
    page.locator("[data-testid=stSlider] input[type=range]").first.focus()
    for _ in range(40):
        page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "before => document.querySelector('[data-testid=stImage] img').getAttribute('src') !== before",
        arg=before, timeout=15_000)
    assert latent_values(page)[0] == pytest.approx(0.4, abs=1e-6)
    # the server receives the final value and puts it in the shareable URL
    page.wait_for_function("() => location.search.includes('z=0.400')", timeout=15_000)


def test_the_map_holds_every_test_image(page: object) -> None:
    counts = page.evaluate("""() => {
        const plot = document.querySelector('.js-plotly-plot');
        return plot._fullData.filter(t => t.type === 'scattergl').map(t => t._length);
    }""")
    assert len(counts) == 10 and sum(counts) == 10_000


def test_clicking_a_point_moves_the_sliders(page: object) -> None:
    # Pixel position of one point of class 1, from plotly's own axis transforms.
    target = page.evaluate("""() => {
        const plot = document.querySelector('.js-plotly-plot');
        const t = plot._fullData.find(t => t.name === '1');
        const box = plot.querySelector('.nsewdrag').getBoundingClientRect();
        const xa = plot._fullLayout.xaxis, ya = plot._fullLayout.yaxis;
        return {x: box.left + xa.l2p(t.x[0]), y: box.top + ya.l2p(t.y[0])};
    }""")
    before = latent_values(page)
    page.mouse.move(target["x"] - 5, target["y"] - 5)
    page.mouse.move(target["x"], target["y"])  # plotly selects the point under the hover
    page.wait_for_function("() => (document.querySelector('.js-plotly-plot')._hoverdata || []).length > 0")
    page.mouse.click(target["x"], target["y"])
    page.wait_for_function(
        f"before => ({LATENT_INPUTS_JS})().some((x, i) => x !== before[i])", arg=before, timeout=15_000)
    assert latent_values(page) != before
    assert page.locator("[data-testid=stException]").count() == 0


def test_interpolation_strip_and_gif_download(page: object, tmp_path: Path) -> None:
    strip = page.locator("[data-testid=stImage]").filter(has_text="steps, slerp")
    strip.wait_for(timeout=15_000)
    with page.expect_download(timeout=15_000) as info:
        page.get_by_role("button", name="Download GIF").click()
    path = tmp_path / "interpolation.gif"
    info.value.save_as(path)
    data = path.read_bytes()
    assert data[:6] == b"GIF89a" and len(data) > 1000


def test_traversal_grid_view(page: object) -> None:
    page.get_by_role("radio", name="Traverse").click()
    page.locator("[data-testid=stImage]").filter(has_text="sweeps").wait_for(timeout=15_000)
    assert "view=traverse" in page.url
