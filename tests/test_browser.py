"""End to end in a real browser: Debian's chromium driven by Playwright against a real
`streamlit run app.py` server on the bundled model."""

from __future__ import annotations

import io
import re
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import training
from explorer.atlas import load_atlas, place_on_map
from explorer.latent import latent_ranges, snap_latent
from explorer.live import principal_plane
from tests.browser_support import (
    CANVAS_HASH_JS,
    CHROMIUM,
    CHROMIUM_ARGS,
    FRAME_SAMPLER_START_JS,
    FRAME_SAMPLER_STOP_JS,
    LATENT_VALUES_JS,
    LIVE_READY_JS,
    MAP_READY_JS,
    NO_WEBASSEMBLY_JS,
    ROOT,
    SCRIPT_IDLE_JS,
    STAR_JS,
    STREAMLIT_RUN,
    drag,
    free_port,
    hover_map_row,
    open_context,
    start_server,
)
from training.checkpoint import save_model
from training.model import ConvVAE, ModelConfig

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make test installs it)"
)


def latent_values(page: object) -> list[float]:
    """The eight latent controls' values, as the browser holds them."""
    return page.evaluate(LATENT_VALUES_JS)


FIRST_DRAWS_JS = """() => {
    const h = window.__latentExplorer;
    return [h.test.timing.placeholder, h.test.timing.firstDraw, h.map.drawnAt];
}"""


def test_page_loads_with_eight_live_sliders_and_no_error(page: object, tmp_path: Path) -> None:
    assert page.locator("[data-testid=stException]").count() == 0
    sliders = page.get_by_role("slider", name=re.compile(r"^z[0-9]+$"))
    assert [sliders.nth(i).get_attribute("aria-label") for i in range(8)] == [f"z{i}" for i in range(1, 9)]
    assert latent_values(page) == [0.0] * 8
    assert page.locator("canvas.lx-image").is_visible() and page.locator("canvas.lx-pad").is_visible()
    # the server's decode of z was drawn as the controls came, before the map's first draw held the
    # thread, and the browser's own decoder drew after both
    placeholder, first_own, map_drawn = page.evaluate(FIRST_DRAWS_JS)
    assert placeholder is not None and placeholder < map_drawn and placeholder < first_own
    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one


NEXT_FRAMES_JS = "() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))"


def map_shot(page: object) -> np.ndarray:
    """The map's plot as RGB pixels (H, W, 3)."""
    png = page.locator(".st-key-atlas_map .lx-map-plot").screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)


def coloured(pixels: np.ndarray, hex_colour: str, tolerance: int = 60) -> int:
    """How many PIXELS are near HEX_COLOUR (drawn points blend with the white behind them)."""
    rgb = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(pixels - rgb).sum(axis=-1) < tolerance).sum())


def test_the_map_draws_every_test_image_and_its_legend_hides_a_class(page: object) -> None:
    assert page.evaluate("() => window.__latentExplorer.map.shown.n") == 10_000
    assert page.evaluate("() => window.__latentExplorer.map.layers.map(l => l.split)") == ["test"]
    before = map_shot(page)
    assert coloured(before, "#f28e2b") > 500  # the ones, orange (Tableau-10's second colour)
    legend = page.locator(".st-key-atlas_map .lx-legend-item[data-class='1']")
    legend.click()
    page.wait_for_function("() => window.__latentExplorer.map.hidden.has(1)")
    page.evaluate(NEXT_FRAMES_JS)  # the library draws the filtered points on its next frame
    hidden = map_shot(page)
    assert coloured(hidden, "#f28e2b") < 20 and legend.get_attribute("aria-pressed") == "false"
    assert coloured(hidden, "#4e79a7") > 500  # the zeros stay
    legend.click()
    page.wait_for_function("() => !window.__latentExplorer.map.hidden.has(1)")


BUTTON_LABELS = ["Random", "Random (fitted)", "Origin", "Encode it"]
# The labels among NAMES whose button does not show them whole (cut with an ellipsis).
CUT_LABELS_JS = """names => names.filter(name => {
    const button = [...document.querySelectorAll('button')].find(b => b.innerText.trim() === name);
    return !button || [button, ...button.querySelectorAll('*')].some(e => e.scrollWidth > e.clientWidth + 1);
})"""


def test_on_a_narrow_screen_the_sliders_stay_beside_the_image_and_labels_are_whole(
    browser: object, server: str
) -> None:
    # 1024 px with the sidebar open: a 320-px image would push the sliders below it, out of sight
    # while dragging them; the component shrinks the image instead (a CSS container query).
    sides = {}
    for width in (1024, 1400):
        context = open_context(browser, width, 700)
        try:
            page = context.new_page()
            page.goto(server)
            page.wait_for_function(LIVE_READY_JS)
            image = page.locator("canvas.lx-image").bounding_box()
            slider = page.get_by_role("slider", name="z1").bounding_box()
            last = page.get_by_role("slider", name="z8").bounding_box()
            assert slider["x"] > image["x"] + image["width"], f"at {width} px the sliders wrapped below the image"
            assert last["y"] + last["height"] < 700, f"at {width} px z8 is below the fold"
            assert page.evaluate(CUT_LABELS_JS, BUTTON_LABELS) == [], f"at {width} px button labels are cut"
            sides[width] = image["width"]
        finally:
            context.close()
    assert sides == {1024: 240, 1400: 320}


def test_in_a_dark_theme_the_map_is_a_white_card_with_a_readable_legend(browser: object, server: str) -> None:
    context = open_context(browser, 1400, 1000, color_scheme="dark")
    try:
        page = context.new_page()
        page.goto(server)
        page.wait_for_function(MAP_READY_JS)
        app_background = page.evaluate(
            "() => getComputedStyle(document.querySelector('[data-testid=stApp]')).backgroundColor"
        )
        plot = page.locator(".st-key-atlas_map .lx-map-plot").evaluate("e => getComputedStyle(e).backgroundColor")
        legend = page.locator(".st-key-atlas_map .lx-legend-item").first.evaluate("e => getComputedStyle(e).color")
        assert app_background != "rgb(255, 255, 255)"  # the page is dark...
        assert plot == "rgb(255, 255, 255)" and legend == "rgb(49, 51, 63)"  # ...the map is not
    finally:
        context.close()


def test_dragging_a_slider_redraws_the_image_live_and_python_gets_the_final_value(page: object) -> None:
    page.evaluate(FRAME_SAMPLER_START_JS)
    seconds = drag(page, page.get_by_role("slider", name="z1"), 0.2, 0.8)
    changes = page.evaluate(FRAME_SAMPLER_STOP_JS)
    # The image changed on many frames during the drag, not once at the release.
    assert len(changes) >= 10, f"{len(changes)} changed frames in a {seconds:.2f} s drag"
    final = latent_values(page)[0]
    assert final > 0.5
    # Python received the released value: it is in the shareable URL.
    page.wait_for_function("v => new URLSearchParams(location.search).get('z').startsWith(v)", arg=f"{final:.3f},")


def test_the_map_star_follows_the_drag_and_the_map_is_not_redrawn(page: object) -> None:
    page.wait_for_function(f"() => ({STAR_JS})() !== null")
    page.evaluate("() => { window.__latentExplorer.map.canvas.__kept = true; }")
    draws = page.evaluate("() => window.__latentExplorer.test.stats.mapDraws")
    page.evaluate(f"""() => {{ window.__stars = new Set();
        const tick = () => {{ const s = ({STAR_JS})(); if (s) window.__stars.add(s.join());
                             if (window.__stars.size < 1000) requestAnimationFrame(tick); }};
        requestAnimationFrame(tick); }}""")
    drag(page, page.get_by_role("slider", name="z2"), 0.15, 0.85)
    assert page.evaluate("() => window.__stars.size") >= 10  # the star moved while dragging
    z = np.array(latent_values(page), np.float32)
    page.wait_for_function("v => new URLSearchParams(location.search).get('z').includes(v)", arg=f",{z[1]:.3f},")
    page.wait_for_function(SCRIPT_IDLE_JS)
    x, y = page.evaluate(STAR_JS)
    atlas = load_atlas(str(ROOT / "checkpoints" / "mnist-z8"), 8)
    assert (x, y) == pytest.approx(place_on_map(atlas, z), abs=1e-3)
    # Python's rerun after the release re-sent no points: the same canvas, drawn once
    assert page.evaluate("() => window.__latentExplorer.map.canvas.__kept === true")
    assert page.evaluate("() => window.__latentExplorer.test.stats.mapDraws") == draws


def test_the_pad_moves_z_across_the_principal_plane(page: object, server: str) -> None:
    before = np.array(latent_values(page))
    page.evaluate(FRAME_SAMPLER_START_JS)
    drag(page, page.locator("canvas.lx-pad"), 0.1, 0.9, moves=40)
    changes = page.evaluate(FRAME_SAMPLER_STOP_JS)
    assert len(changes) >= 5
    after = np.array(latent_values(page))
    moved = after - before
    assert np.abs(moved).max() > 0.5
    # The move lies in the plane of the encoded means' two principal directions.
    plane = principal_plane(load_atlas(str(ROOT / "checkpoints" / "mnist-z8"), 8).means)
    in_plane = (moved @ plane.u) * plane.u + (moved @ plane.v) * plane.v
    assert np.abs(moved - in_plane).max() < 0.05  # controls round to 0.01
    page.wait_for_function("v => new URLSearchParams(location.search).get('z').startsWith(v)", arg=f"{after[0]:.3f},")


# Logs each decode the page asks of its decoder: [latents, ms since the log began].
DECODE_LOG_JS = """() => { const c = window.__latentExplorer.test.active, run = c.decoder.run.bind(c.decoder);
    const started = performance.now(); window.__decodes = [];
    c.decoder.run = (values, count, label) => {
        window.__decodes.push([count, performance.now() - started]); return run(values, count, label); }; }"""


def test_a_key_step_decodes_the_image_before_the_pads_grid(page: object) -> None:
    pad_before = page.evaluate("() => window.__latentExplorer.test.active.preview.toDataURL()")
    page.get_by_role("slider", name="z3").focus()
    page.evaluate(DECODE_LOG_JS)
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => window.__decodes.filter(([n]) => n > 1).length >= 9")
    decodes = page.evaluate("() => window.__decodes")
    # the image's own decode first; the pad's 81 once Python's rerun is back, a row a frame, so
    # that a step taken meanwhile waits for one row
    assert decodes[0][0] == 1 and [n for n, _ in decodes if n > 1] == [9] * 9
    page.wait_for_function("b => window.__latentExplorer.test.active.preview.toDataURL() !== b", arg=pad_before)


def test_random_from_python_moves_the_live_controls(page: object) -> None:
    before = latent_values(page)
    draws = page.evaluate("() => window.__latentExplorer.test.stats.draws")
    page.get_by_role("button", name="Random", exact=True).click()
    page.wait_for_function(f"b => ({LATENT_VALUES_JS})().every((x, i) => x !== b[i])", arg=before)
    page.wait_for_function("d => window.__latentExplorer.test.stats.draws > d", arg=draws)
    expected = ",".join(f"{v:.3f}" for v in latent_values(page))
    page.wait_for_function("v => new URLSearchParams(location.search).get('z') === v", arg=expected)


def test_the_browser_decodes_like_torch(page: object) -> None:
    """100 random latents through onnxruntime-web in the page and through torch: equal to 1e-4,
    for the sharpened decoder the page opens on."""
    latents = np.random.default_rng(0).normal(size=(100, 8)).astype(np.float32)
    browser = np.array(page.evaluate("z => window.__latentExplorer.test.decode(z)", latents.tolist()), np.float32)
    model = training.load_model(ROOT / "checkpoints" / "mnist-z8-sharp")
    with torch.no_grad():
        expected = model.decode(torch.from_numpy(latents)).reshape(100, -1).numpy()
    assert browser.shape == expected.shape == (100, 784)
    assert np.abs(browser - expected).max() < 1e-4


# [the map row a click on a point loaded], once there is one (wrapped: row 0 is falsy)
CLICKED_ROW_JS = (
    "() => { const r = window.__latentExplorer.test.stats.clickedRow; return r === undefined ? false : [r]; }"
)


def test_clicking_a_point_loads_its_latent(page: object) -> None:
    atlas = load_atlas(str(ROOT / "checkpoints" / "mnist-z8"), 8)
    row = int(np.flatnonzero(atlas.labels == 1)[0])
    page.wait_for_function(SCRIPT_IDLE_JS)  # the page laid out: the point stays where it is drawn
    x, y = hover_map_row(page, atlas.embedding[row].tolist(), row)  # click once it is this one
    page.mouse.click(x, y)
    page.mouse.move(5, 5)  # off the map: the hover gives way to what the click committed
    # the point under the pointer when the button came up: this one, or its neighbour if the page
    # moved meanwhile (the latent must be the clicked point's either way)
    clicked = page.wait_for_function(CLICKED_ROW_JS).json_value()[0]
    assert np.abs(atlas.embedding[clicked] - atlas.embedding[row]).max() < 2.0
    low, high = latent_ranges(atlas.means, 8)
    expected = snap_latent(atlas.means[clicked], low, high).tolist()
    page.wait_for_function(f"v => JSON.stringify(({LATENT_VALUES_JS})()) === JSON.stringify(v)", arg=expected)
    # the test image's number comes with Python's rerun, which may end after the controls moved
    page.wait_for_function(
        "v => document.querySelector('input[aria-label=\"Test image #\"]').value === v",
        arg=str(int(atlas.index[clicked])),
    )
    assert page.evaluate("() => window.__latentExplorer.map.selection.length") == 0  # a click is no selection


def test_interpolation_strip_and_gif_download(page: object, tmp_path: Path) -> None:
    strip = page.locator("[data-testid=stImage]").filter(has_text="steps, slerp")
    strip.wait_for()
    with page.expect_download() as info:
        page.get_by_role("button", name="Download GIF").click()
    path = tmp_path / "interpolation.gif"
    info.value.save_as(path)
    data = path.read_bytes()
    assert data[:6] == b"GIF89a" and len(data) > 1000


def test_traversal_grid_view(page: object) -> None:
    page.get_by_role("radio", name="Traverse").click()
    page.locator("[data-testid=stImage]").filter(has_text="sweeps").wait_for()
    assert "view=traverse" in page.url


def test_the_training_view_draws_the_bundled_models_history_with_its_axes(page: object) -> None:
    page.get_by_role("radio", name="VAE", exact=True).click()  # the VAE's own training, not its sharpening
    page.get_by_role("radio", name="Training").click()
    page.get_by_text("Trained on mnist and 2 copies of 2,430 printed digits, 90 epochs of batch 128").wait_for()
    page.get_by_text(
        "python -m training train --out runs/mnist-z8 --epochs 90 --weight-decay 0.1 --printed-digits 2"
    ).wait_for()
    chart = page.locator(".js-plotly-plot").filter(has_text="test −ELBO")
    chart.wait_for()
    assert "view=training" in page.url
    legend = chart.locator(".legendtext").all_text_contents()
    assert legend == ["training loss (mean since the previous point)", "test −ELBO", "test MSE of decode(μ)"]
    # 90 points a line, and axes with their numbers (with theme=None Streamlit drew none)
    assert chart.evaluate("e => e.data.map(t => t.x.length)") == [90, 90, 90]
    epochs = chart.locator(".x2tick text").all_text_contents()
    assert "20" in epochs and "80" in epochs, epochs
    assert "100" in chart.locator(".ytick text").all_text_contents()  # nats
    assert "0.015" in chart.locator(".y2tick text").all_text_contents()  # MSE
    # and on screen: inside the chart's box, not cut off by its margins (as with theme=None)
    assert chart.evaluate("""e => { const box = e.getBoundingClientRect();
        const labels = Array.from(e.querySelectorAll('.ytick text, .y2tick text, .x2tick text'));
        return labels.length > 0 && labels.every(t => { const r = t.getBoundingClientRect();
            return r.width > 0 && r.left >= box.left && r.right <= box.right && r.top >= box.top
                && r.bottom <= box.bottom; }); }""")


def test_an_rgb_model_is_decoded_live_too(page: object, tmp_path: Path) -> None:
    """A 3×64×64 checkpoint (random weights, no atlas) picked by path: the same controls,
    in colour, equal to torch."""
    config = ModelConfig(latent_dim=6, channels=3, image_size=64, conv_channels=(8, 16, 16), hidden_dim=32)
    torch.manual_seed(0)
    model = ConvVAE(config).eval()
    save_model(tmp_path / "rgb", model, {"model": config.to_dict()})
    page.get_by_label("…or a checkpoint folder on this machine").fill(str(tmp_path / "rgb"))
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => { const a = window.__latentExplorer.test.active;"
        " return a && a.decoder && a.shape[0] === 3 && a.dim === 6; }",
    )
    assert len(latent_values(page)) == 6
    latents = np.random.default_rng(1).normal(size=(20, 6)).astype(np.float32)
    browser = np.array(page.evaluate("z => window.__latentExplorer.test.decode(z)", latents.tolist()), np.float32)
    with torch.no_grad():
        expected = model.decode(torch.from_numpy(latents)).reshape(20, -1).numpy()
    assert browser.shape == (20, 3 * 64 * 64) and np.abs(browser - expected).max() < 1e-4
    page.get_by_role("slider", name="z1").focus()
    page.keyboard.press("ArrowRight")
    colourful = page.evaluate("""() => {
        const find = root => { for (const e of root.querySelectorAll('*')) if (e.shadowRoot) {
            const c = e.shadowRoot.querySelector('canvas.lx-image') || find(e.shadowRoot);
            if (c) return c; } return null; };
        const px = find(document).getContext('2d').getImageData(0, 0, 320, 320).data;
        let n = 0; for (let i = 0; i < px.length; i += 4) if (px[i] !== px[i + 1] || px[i + 1] !== px[i + 2]) n++;
        return n;
    }""")
    assert colourful > 1000  # RGB pixels, not gray


# a digit as the pointer draws it on the pad: one stroke through these points (of the pad's unit square)
DRAWN_DIGITS = {
    "1": [(0.5, 0.15), (0.45, 0.85)],
    "7": [(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)],
}


@pytest.mark.parametrize("digit", sorted(DRAWN_DIGITS))
def test_a_drawn_digit_is_scored_and_lands_among_its_own_class(page: object, digit: str) -> None:
    page.get_by_role("radio", name="Anomaly").click()
    pad = page.locator("canvas.sk-canvas")
    pad.wait_for()
    pad.scroll_into_view_if_needed()
    box = pad.bounding_box()
    corners = DRAWN_DIGITS[digit]
    page.mouse.move(box["x"] + box["width"] * corners[0][0], box["y"] + box["height"] * corners[0][1])
    page.mouse.down()
    for (x0, y0), (x1, y1) in zip(corners[:-1], corners[1:]):
        for k in range(1, 21):
            x, y = x0 + (x1 - x0) * k / 20, y0 + (y1 - y0) * k / 20
            page.mouse.move(box["x"] + box["width"] * x, box["y"] + box["height"] * y)
    page.mouse.up()
    assert latent_values(page) == [0.0] * 8
    score = page.get_by_text("Anomaly score:")
    score.wait_for()
    assert "of the 10,000 test images" in score.inner_text()
    # the map places it among its own class: its latent's nearest test images are of that digit
    assert f"Its latent lies among the {digit} test images" in score.inner_text()
    # its latent is loaded at once: the controls (and the star) move there
    page.wait_for_function(f"() => ({LATENT_VALUES_JS})().some(x => x !== 0)")
    assert "view=anomaly" in page.url


def test_uploads_are_scored_and_a_bomb_is_refused(page: object, tmp_path: Path) -> None:
    page.get_by_role("radio", name="Anomaly").click()
    page.get_by_text("upload", exact=True).click()
    digit = Image.new("L", (300, 400), 230)
    ImageDraw.Draw(digit).line([(150, 40), (140, 360)], fill=10, width=30)
    digit.save(tmp_path / "one.png")
    page.locator("input[type=file]").set_input_files(str(tmp_path / "one.png"))
    page.get_by_text("Anomaly score:").wait_for()
    # the page reruns once more to load the image's latent: let it settle before the next upload
    page.wait_for_function(f"() => ({LATENT_VALUES_JS})().some(x => x !== 0)")
    page.wait_for_function(SCRIPT_IDLE_JS)
    Image.new("1", (10_000, 10_000)).save(tmp_path / "bomb.png")  # 100 megapixels, a few KB
    page.locator("input[type=file]").set_input_files(str(tmp_path / "bomb.png"))
    page.get_by_text("megapixel limit").wait_for()
    page.wait_for_function(SCRIPT_IDLE_JS)
    # several at once: ranked in a table, the most anomalous inspected first, the bomb refused
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(tmp_path / "noise.png")
    page.locator("input[type=file]").set_input_files([str(tmp_path / n) for n in ("one.png", "noise.png", "bomb.png")])
    page.locator("[data-testid=stDataFrame]").wait_for()
    inspect = page.get_by_role("combobox", name="Inspect")
    page.wait_for_function("e => e.value === '#1 noise.png'", arg=inspect.element_handle())
    # on a 1024-px screen the whole table fits: no column scrolled out of sight
    page.set_viewport_size({"width": 1024, "height": 800})
    page.wait_for_function("""() => { const s = document.querySelector('[data-testid=stDataFrame] .dvn-scroller');
        return s.clientWidth < 1000 && s.scrollWidth <= s.clientWidth + 1; }""")
    # (the uploader keeps earlier files too: the first bomb is still listed, and refused again)
    refusals = page.get_by_text("megapixel limit").all_inner_texts()
    assert refusals and all(text.startswith("bomb.png: is 10000×10000 pixels") for text in refusals)


def test_a_conditional_model_decodes_live_with_the_picked_class(page: object, server: str) -> None:
    page.goto(f"{server}/?model=mnist-cvae-z8")
    page.wait_for_function(
        "() => { const a = window.__latentExplorer && window.__latentExplorer.test.active;"
        " return a && a.decoder && a.data.num_classes === 10; }",
    )
    latents = np.random.default_rng(2).normal(size=(20, 8)).astype(np.float32)
    model = training.load_model(ROOT / "checkpoints" / "mnist-cvae-z8")
    for label in (3, 8):
        browser = np.array(
            page.evaluate("([z, y]) => window.__latentExplorer.test.decode(z, y)", [latents.tolist(), label])
        )
        with torch.no_grad():
            expected = model.decode(torch.from_numpy(latents), torch.full((20,), label)).reshape(20, -1).numpy()
        assert np.abs(browser - expected).max() < 1e-4
    page.evaluate(FRAME_SAMPLER_START_JS)
    page.get_by_role("radio", name="7", exact=True).click()  # the class picker
    page.wait_for_function("() => window.__latentExplorer.test.active.label === 7")
    # the image is redrawn as a seven
    page.wait_for_function("() => window.__frameSamplers['canvas.lx-image'].changes.length >= 1")
    page.evaluate(FRAME_SAMPLER_STOP_JS)


def test_a_latent_the_model_leaves_unused_is_dimmed_and_says_why(page: object, server: str) -> None:
    page.goto(f"{server}/?model=fashion-z8")
    page.wait_for_function(
        "() => { const a = window.__latentExplorer && window.__latentExplorer.test.active;"
        " return a && a.decoder && a.data.unused.length === 1; }",
    )
    rows = page.locator(".lx-row")
    assert rows.count() == 8
    opacities = [float(rows.nth(i).evaluate("e => getComputedStyle(e).opacity")) for i in range(8)]
    assert opacities == [1.0] * 6 + [0.4] + [1.0]  # z7
    assert rows.nth(6).get_attribute("title") == "Unused by this model: the decoder ignores it"
    page.get_by_text("7 of 8 latents in use: z7 is not.").wait_for()  # the sidebar says it too
    page.goto(f"{server}/?model=mnist-z8")  # all eight in use: nothing dimmed
    page.wait_for_function(LIVE_READY_JS)
    assert [rows.nth(i).evaluate("e => getComputedStyle(e).opacity") for i in range(8)] == ["1"] * 8


def test_without_webassembly_the_page_falls_back_to_server_sliders(playwright: object, server: str) -> None:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        page = open_context(browser, 1400, 1200).new_page()
        page.add_init_script(NO_WEBASSEMBLY_JS)  # a browser without WebAssembly
        page.goto(server)
        warning = page.get_by_text("Live decoding is off")
        warning.wait_for()
        assert "WebAssembly" in warning.inner_text()
        page.get_by_text("decoder(z)").wait_for()
        label = page.locator("[data-testid=stSlider] [data-testid=stWidgetLabel]")
        label.nth(7).wait_for()  # Streamlit draws a slider once its lazily loaded code has come
        labels = label.all_inner_texts()
        assert labels[:8] == [f"z{i}" for i in range(1, 9)]
        # the server's sliders still drive the image
        before = page.locator("[data-testid=stImage] img").first.get_attribute("src")
        page.locator("[data-testid=stSlider] input[type=range]").first.focus()
        for _ in range(40):
            page.keyboard.press("ArrowRight")
        page.wait_for_function(
            "b => document.querySelector('[data-testid=stImage] img').getAttribute('src') !== b",
            arg=before,
        )
        page.wait_for_function("() => location.search.includes('z=0.400')")
        assert page.locator("[data-testid=stException]").count() == 0
    finally:
        browser.close()


def test_compare_draws_both_decoders_live_while_dragging(page: object, server: str, tmp_path: Path) -> None:
    """The bundled sharpened model and its VAE: both images redrawn on every drag frame."""
    page.get_by_text("Compare with the VAE decoder (mnist-z8)").click()
    page.wait_for_function("() => (window.__latentExplorer.test.stats.compareDraws || 0) > 0")
    page.wait_for_selector("text=VAE decoder · mnist-z8")
    page.wait_for_selector("text=sharpened decoder · mnist-z8-sharp")
    primary, compared = "canvas.lx-image:not(.lx-image-compare)", "canvas.lx-image-compare"
    for selector in (primary, compared):
        page.evaluate(FRAME_SAMPLER_START_JS, selector)
    seconds = drag(page, page.get_by_role("slider", name="z1"), 0.2, 0.8)
    changes = {selector: page.evaluate(FRAME_SAMPLER_STOP_JS, selector) for selector in (primary, compared)}
    counts = {selector: len(frames) for selector, frames in changes.items()}
    # both images were redrawn on many frames during the drag, not once at the release
    assert all(count >= 10 for count in counts.values()), f"{counts} changed frames in a {seconds:.2f} s drag"
    # and they differ: two decoders, one z
    hashes = [page.evaluate(CANVAS_HASH_JS.replace("canvas.lx-image", s)) for s in (primary, compared)]
    assert hashes[0] != hashes[1]


@pytest.mark.parametrize(("query", "view"), [("?view=anomaly", "Anomaly"), ("?model=fashion-z8", "Interpolate")])
def test_the_view_control_shows_the_view_drawn_however_the_page_was_opened(
    browser: object, server: str, query: str, view: str
) -> None:
    context = open_context(browser, 1400, 1200)
    page = context.new_page()
    page.goto(server + "/" + query)
    page.wait_for_function(LIVE_READY_JS)
    page.wait_for_function(MAP_READY_JS)
    page.wait_for_function(SCRIPT_IDLE_JS)
    control = page.locator("[data-testid=stButtonGroup]").filter(has_text="Interpolate")
    control.locator("button[aria-checked]").first.wait_for()  # drawn: below the map, it may come last
    assert control.locator("button[aria-checked=true]").all_inner_texts() == [view]
    context.close()


def test_streamlit_run_loads_the_pages_modules_before_the_first_visitor(browser: object) -> None:
    # app.py is an st.App to `streamlit run`: torch is imported before the server answers
    port = free_port()
    process = start_server(port, launcher=STREAMLIT_RUN)
    try:
        assert "libtorch" in Path(f"/proc/{process.pid}/maps").read_text()
        context = open_context(browser, 1400, 1200)
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}")
        page.wait_for_function(LIVE_READY_JS)  # the page runs as `make app` serves it
        assert page.locator("[data-testid=stException]").count() == 0
        context.close()
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_bundles_come_over_http_once_and_the_browser_keeps_them(browser: object) -> None:
    # under a base path, as behind a proxy: the decoder and the map's points are fetched from
    # <base>/bundles/<id>, never sent in the page's websocket messages, and a reload reuses them
    port = free_port()
    process = start_server(port, options=("--server.baseUrlPath", "lab"))
    try:
        context = open_context(browser, 1400, 1200)
        page = context.new_page()
        frames: list[int] = []
        page.on("websocket", lambda ws: ws.on("framereceived", lambda f: frames.append(len(f))))
        fetched = []
        page.on("response", lambda r: fetched.append(r) if "/lab/bundles/" in r.url else None)
        page.goto(f"http://127.0.0.1:{port}/lab/")
        page.wait_for_function(LIVE_READY_JS)
        page.wait_for_function(MAP_READY_JS)
        assert page.locator("[data-testid=stException]").count() == 0
        ids = page.evaluate(
            "() => { const d = window.__latentExplorer.controls.data; return [d.bundle_id, d.points_id]; }"
        )
        assert {r.url.rsplit("/", 1)[1] for r in fetched} >= set(ids)
        for response in fetched:
            headers = response.all_headers()
            assert response.status == 200 and "immutable" in headers["cache-control"]
            assert headers.get("content-encoding", "identity") == "identity"  # never gzipped on the fly
        assert frames and max(frames) < 250_000  # JSON and the components' script: no megabytes
        # a reload: the same bundles, from the browser's cache (nothing transferred)
        page.reload()
        page.wait_for_function(LIVE_READY_JS)
        sizes = page.evaluate(
            "() => performance.getEntriesByType('resource').filter(e => e.name.includes('/lab/bundles/'))"
            ".map(e => e.transferSize)"
        )
        assert len(sizes) >= 2 and all(size == 0 for size in sizes)
        context.close()
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/lab/bundles/0123456789abcdef", timeout=10)
        assert missing.value.code == 404 and b"reload the page" in missing.value.read()
    finally:
        process.terminate()
        process.wait(timeout=10)
