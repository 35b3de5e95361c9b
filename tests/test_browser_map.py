"""The map as an instrument, in a real browser against a real server on the bundled mnist-z8:
hovering decodes where the pointer is and leaving restores z, a click commits, a point shows
its test image beside its reconstruction, a concept slider moves z along its direction, the
nearest training images of an encoded test image, typed slider values."""

from __future__ import annotations

import io
import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
import torch
from PIL import Image

import training
from explorer.atlas import load_atlas, nearest_training
from explorer.latent import latent_ranges, snap_latent
from explorer.neighbours import find_training_images
from tests.browser_support import (
    CANVAS_HASH_JS,
    CHROMIUM,
    FRAME_SAMPLER_START_JS,
    FRAME_SAMPLER_STOP_JS,
    LATENT_VALUES_JS,
    MAP_PIXELS_JS,
    MAP_VIEW_JS,
    ROOT,
    SCRIPT_IDLE_JS,
    drag,
)
from tests.conftest import real_mnist_dir

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make test installs it)"
)
FOLDER = ROOT / "checkpoints" / "mnist-z8"
ATLAS = load_atlas(FOLDER, 8)
SHOWN_DECODER = ROOT / "checkpoints" / "mnist-z8-sharp"  # the page opens on the sharpened decoder


def class_rows(label: int) -> np.ndarray:
    """The atlas rows of one class."""
    return np.flatnonzero(ATLAS.labels == label)


def latent_values(page: object) -> list[float]:
    return page.evaluate(LATENT_VALUES_JS)


def map_pixels(page: object, points: np.ndarray) -> list[tuple[float, float]]:
    page.locator(".st-key-atlas_map").scroll_into_view_if_needed()
    return [tuple(p) for p in page.evaluate(MAP_PIXELS_JS, np.asarray(points, np.float64).tolist())]


def steady_map_pixels(page: object, points: np.ndarray, tries: int = 25) -> list[tuple[float, float]]:
    """map_pixels once two readings 200 ms apart agree: after the previous test's click the page
    reruns, and the map may still move while it lays out."""
    last = map_pixels(page, points)
    for _ in range(tries):
        page.wait_for_timeout(200)
        now = map_pixels(page, points)
        if np.allclose(now, last, atol=0.5):
            return now
        last = now
    return last


def empty_spot(page: object) -> np.ndarray:
    """A map position inside the view far from every test image."""
    (x0, x1), (y0, y1) = page.evaluate(MAP_VIEW_JS)
    xs, ys = np.meshgrid(np.linspace(x0, x1, 40)[3:-3], np.linspace(min(y0, y1), max(y0, y1), 40)[3:-3])
    grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
    gaps = np.min(np.linalg.norm(grid[:, None] - ATLAS.embedding[None], axis=-1), axis=1)
    return grid[gaps.argmax()]


def url_z(page: object) -> str:
    return parse_qs(urlparse(page.url).query).get("z", [""])[0]


def test_hovering_the_map_decodes_every_move_and_leaving_restores_z(page: object) -> None:
    before_values, before_hash, before_url = latent_values(page), page.evaluate(CANVAS_HASH_JS), url_z(page)
    one, seven = (np.median(ATLAS.embedding[class_rows(label)], axis=0) for label in (1, 7))
    path = map_pixels(page, [one + (seven - one) * k / 60 for k in range(61)])
    page.mouse.move(*path[0])
    page.evaluate(FRAME_SAMPLER_START_JS)
    for pixel in path:  # no button pressed: a hover, not a drag
        page.mouse.move(*pixel)
    changes = page.evaluate(FRAME_SAMPLER_STOP_JS)
    assert len(changes) >= 20  # the image followed the pointer, frame after frame
    hovered = latent_values(page)
    assert hovered != before_values  # the sliders followed too
    stats = page.evaluate("() => window.__latentExplorer.test.stats")
    assert stats["hoverMoves"] >= 55
    # over 7's points the decode is a 7's: the hovered z is among the sevens' means
    assert np.linalg.norm(ATLAS.means[class_rows(7)] - hovered, axis=1).min() < 1.0
    page.mouse.move(5, 5)  # off the map
    page.wait_for_function(f"v => JSON.stringify(({LATENT_VALUES_JS})()) === JSON.stringify(v)", arg=before_values)
    page.wait_for_function(f"h => ({CANVAS_HASH_JS})() === h", arg=before_hash)
    assert url_z(page) == before_url  # hovering never reran the script


def test_a_sparse_region_says_so_and_a_click_there_commits_the_hovered_z(page: object) -> None:
    spot = map_pixels(page, [empty_spot(page)])[0]
    page.mouse.move(spot[0] - 3, spot[1])
    page.mouse.move(*spot)
    note = page.locator(".lx-far-note")
    note.wait_for(state="visible")
    assert re.search(
        r"Far from the data: the nearest test image is [0-9.]+× the map's usual spacing", note.inner_text()
    )
    assert page.evaluate("() => window.__latentExplorer.test.stats.lastHoverGap") > 3
    hovered = latent_values(page)
    page.mouse.click(*spot)
    page.mouse.move(5, 5)
    expected = ",".join(f"{v:.3f}" for v in hovered)
    page.wait_for_function("v => new URLSearchParams(location.search).get('z') === v", arg=expected)
    assert latent_values(page) == hovered  # kept after leaving: committed
    assert note.is_hidden()


def test_hovering_a_point_shows_its_test_image_beside_its_reconstruction(page: object) -> None:
    row = int(class_rows(3)[10])
    x, y = steady_map_pixels(page, [ATLAS.embedding[row]])[0]
    page.mouse.move(x - 4, y - 4)
    page.mouse.move(x, y)
    # the card of the point under the pointer: this one, or one drawn over it a pixel or two away
    page.wait_for_function("() => window.__latentExplorer.test.stats.cards > 0")
    row = int(page.evaluate("() => window.__latentExplorer.map.card.node.dataset.row"))
    assert np.hypot(*(np.array(map_pixels(page, [ATLAS.embedding[row]])[0]) - (x, y))) < 6
    pixels = page.evaluate("""() => {
        const card = window.__latentExplorer.map.card.node;
        const read = c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);
        return [read(card.querySelector('.lx-card-image')), read(card.querySelector('.lx-card-reconstruction')),
                card.querySelector('.lx-card-image').width, card.style.display];
    }""")
    original, reconstruction, side, display = pixels
    assert display == "flex" and side == 56
    shown = np.array(original, np.uint8).reshape(56, 56, 4)[::2, ::2, 0]  # 2× nearest-neighbour: one per pixel
    sheet = np.asarray(Image.open(io.BytesIO(ATLAS.thumbnails)))
    columns = ATLAS.thumbnail_columns
    tile = sheet[(row // columns) * 28 : (row // columns + 1) * 28, (row % columns) * 28 : (row % columns + 1) * 28]
    np.testing.assert_array_equal(shown, tile)
    model = training.load_model(SHOWN_DECODER)
    with torch.no_grad():
        decoded = model.decode(torch.from_numpy(np.array(ATLAS.means[row : row + 1])))[0, 0].numpy()
    drawn = np.array(reconstruction, np.float32).reshape(56, 56, 4)[::2, ::2, 0] / 255
    assert np.abs(drawn - decoded).max() < 1 / 255 + 1e-6
    page.mouse.move(5, 5)
    page.wait_for_function("() => window.__latentExplorer.map.card.node.style.display === 'none'")


def choose(page: object, label: str, option: str) -> None:
    page.wait_for_function(SCRIPT_IDLE_JS)
    box = page.get_by_role("combobox", name=label)
    box.scroll_into_view_if_needed()
    box.click()
    page.get_by_role("option", name=option, exact=True).click()


def test_a_concept_slider_between_two_classes_moves_z_along_their_direction(page: object) -> None:
    choose(page, "Concept direction from", "1")
    choose(page, "to", "7")
    slider = page.get_by_role("slider", name="concept: 1 → 7")
    slider.wait_for()
    page.wait_for_function("() => new URLSearchParams(location.search).has('concept')")
    slider.scroll_into_view_if_needed()
    before = np.array(latent_values(page))
    drag(page, slider, 0.3, 0.7, moves=30)
    after = np.array(latent_values(page))
    moved = after - before
    u = ATLAS.means[class_rows(7)].mean(axis=0) - ATLAS.means[class_rows(1)].mean(axis=0)
    u /= np.linalg.norm(u)
    assert np.linalg.norm(moved) > 0.5
    assert np.abs(moved - (moved @ u) * u).max() < 0.02  # along the direction; the controls round to 0.01
    assert page.locator("canvas.lx-concept-strip").is_visible()
    # the link carries the direction: a fresh page from it has the same slider
    link = page.url
    page.goto(link)
    page.get_by_role("slider", name="concept: the link's direction").wait_for()


def test_the_nearest_training_images_of_an_encoded_test_image(page: object) -> None:
    page.get_by_label("Test image #", exact=True).fill("5")
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Encode it").click()
    page.get_by_text("Nearest training images").click()
    captions = page.locator(".st-key-neighbours [data-testid=stImageCaption]")
    info = page.get_by_text("The training images are not on this machine")
    page.wait_for_function(
        "() => document.querySelectorAll('.st-key-neighbours [data-testid=stImageCaption]').length === 8"
        " || document.body.innerText.includes('The training images are not on this machine')",
    )
    text = " ".join(captions.all_inner_texts()) if captions.count() else info.inner_text()
    rows = [int(r) for r in re.findall(r"#(\d+)", text)]
    low, high = latent_ranges(ATLAS.means, 8)
    z = snap_latent(ATLAS.means[5], low, high)
    expected_rows, expected_distances = nearest_training(ATLAS, z)
    assert rows == expected_rows.tolist()
    # the test image's own nearest training image, by its exact mean, is among them
    own = nearest_training(ATLAS, ATLAS.means[5], k=1)[0][0]
    assert own in rows
    assert f"d {expected_distances[0]:.2f}" in text or f"({expected_distances[0]:.2f})" in text


def test_a_typed_value_is_checked_clamped_and_committed(page: object) -> None:
    before = latent_values(page)
    value = page.locator("output.lx-value").nth(2)
    value.click()
    page.keyboard.type("abc")
    page.keyboard.press("Enter")
    note = page.locator(".lx-type-note")
    note.wait_for(state="visible")
    assert "“abc” is not a number; type z3 as a number from" in note.inner_text()
    assert latent_values(page) == before
    value.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("1.234")
    page.keyboard.press("Enter")
    assert latent_values(page)[2] == 1.23 and note.is_hidden()
    page.wait_for_function("() => new URLSearchParams(location.search).get('z').split(',')[2] === '1.230'")
    low, high = latent_ranges(ATLAS.means, 8)
    value.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("99")
    page.keyboard.press("Enter")
    assert latent_values(page)[2] == pytest.approx(float(snap_latent(high, low, high)[2]))
    assert "is outside its range" in note.inner_text()


def test_a_box_selection_is_dimmed_around_and_becomes_a_concept_group(page: object) -> None:
    ones = ATLAS.embedding[class_rows(1)]
    (x0, y0), (x1, y1) = map_pixels(page, [np.percentile(ones, 20, axis=0), np.percentile(ones, 80, axis=0)])
    page.locator(".st-key-atlas_map button[data-mode=box]").click()
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=12)
    page.mouse.up()
    page.wait_for_function("() => window.__latentExplorer.map.selection.length > 50")
    selected = page.evaluate("() => window.__latentExplorer.map.selection")
    assert (ATLAS.labels[selected] == 1).mean() > 0.95  # the box held ones
    export = page.locator(".st-key-atlas_map button.lx-map-export")
    assert export.inner_text() == f"Export {len(selected):,} as CSV" and export.is_enabled()
    choose(page, "Concept direction from", "points selected on the map")
    choose(page, "to", "7")
    page.get_by_role("slider", name="concept: points selected on the map → 7").wait_for()
    page.keyboard.press("Escape")  # Esc clears the selection, and the button says so
    page.wait_for_function("() => window.__latentExplorer.map.selection.length === 0")
    assert export.is_disabled()


def test_search_finds_a_named_point_and_the_export_holds_the_selected_rows(page: object) -> None:
    search = page.locator(".st-key-atlas_map input.lx-map-search")
    search.fill("#5")
    search.press("Enter")
    page.wait_for_function("() => window.__latentExplorer.map.said.textContent === 'test image #5'")
    row = int(np.flatnonzero(ATLAS.index == 5)[0])
    assert page.evaluate("() => window.__latentExplorer.map.selection") == [row]
    with page.expect_download() as download:
        page.locator(".st-key-atlas_map button.lx-map-export").click()
    assert download.value.suggested_filename == "mnist-z8-sharp-selection.csv"
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0] == "split,index,label,z1,z2,z3,z4,z5,z6,z7,z8,x,y" and len(lines) == 2
    fields = lines[1].split(",")
    assert fields[:3] == ["test", "5", str(ATLAS.labels[row])]
    np.testing.assert_allclose([float(v) for v in fields[3:11]], ATLAS.means[row], rtol=1e-6)
    np.testing.assert_allclose([float(v) for v in fields[11:]], ATLAS.embedding[row], rtol=1e-6)
    search.fill("3")  # a class, by its name: all of it, framed by the camera
    search.press("Enter")
    page.wait_for_function("() => window.__latentExplorer.map.said.textContent.endsWith('points of class 3')")
    assert page.evaluate("() => window.__latentExplorer.map.selection.length") == len(class_rows(3))
    search.fill("zebra")
    search.press("Enter")
    page.wait_for_function("() => window.__latentExplorer.map.said.textContent.startsWith('Nothing matches')")


def test_the_switch_draws_every_encoded_image_and_a_training_point_loads(page: object) -> None:
    if ATLAS.train_embedding is None:
        pytest.skip("the bundled atlas has no training split on its map")
    page.get_by_text("Training split too").click()
    page.wait_for_function("() => window.__latentExplorer.map.shown.n === 70000", timeout=120_000)
    page.wait_for_function("() => window.__latentExplorer.map.layers.map(l => l.split).join() === 'test,training'")
    row = int(np.flatnonzero(ATLAS.train_labels == 4)[0])
    x, y = map_pixels(page, [ATLAS.train_embedding[row]])[0]
    page.mouse.move(x - 4, y - 4)
    page.mouse.move(x, y)
    page.wait_for_function("() => window.__latentExplorer.map.point >= 10000")  # hovering a training point
    point = page.evaluate("() => window.__latentExplorer.map.point")
    # resting on it, the card asks Python for the training image: drawn, or said to be missing
    page.wait_for_function("r => window.__latentExplorer.map.trainingImages.has(r)", arg=point - 10_000)
    mnist = real_mnist_dir()
    if mnist is not None:
        page.wait_for_function(
            "() => window.__latentExplorer.map.card.node.querySelector('.lx-card-image')"
            ".getContext('2d').getImageData(0, 0, 56, 56).data.some(v => v > 0)"
        )
        drawn = page.evaluate(
            "() => Array.from(window.__latentExplorer.map.card.node.querySelector('.lx-card-image')"
            ".getContext('2d').getImageData(0, 0, 56, 56).data)"
        )
        shown = np.array(drawn, np.uint8).reshape(56, 56, 4)[::2, ::2, 0]  # 2× nearest-neighbour
        expected = find_training_images({"name": "mnist"}, (1, 28, 28), mnist).images([point - 10_000])[0, 0]
        np.testing.assert_array_equal(shown, np.rint(expected * 255).astype(np.uint8))
    page.mouse.click(x, y)
    page.mouse.move(5, 5)
    assert point >= 10_000  # a training point: map rows after the test split's
    low, high = latent_ranges(ATLAS.means, 8)
    expected = snap_latent(ATLAS.train_means[point - 10_000], low, high).tolist()
    page.wait_for_function(f"v => JSON.stringify(({LATENT_VALUES_JS})()) === JSON.stringify(v)", arg=expected)


def test_another_model_gets_its_own_frame_and_classes(page: object) -> None:
    before = page.evaluate("() => window.__latentExplorer.map.frame")
    page.locator(".st-key-atlas_map .lx-legend-item[data-class='2']").click()  # a class hidden...
    page.wait_for_function("() => window.__latentExplorer.map.hidden.size === 1")
    page.locator("[data-testid=stSidebar] [data-testid=stSelectbox]").first.click()
    page.get_by_role("option", name="emoji-rgb-z8", exact=True).click()
    page.wait_for_function("() => window.__latentExplorer.map.shown.n === 378")
    emoji = load_atlas(ROOT / "checkpoints" / "emoji-rgb-z8", 8)
    frame = page.evaluate("() => window.__latentExplorer.map.frame")
    assert frame != before
    lo, hi = np.percentile(emoji.embedding, [1, 99], axis=0)
    assert frame["cx"] == pytest.approx((lo[0] + hi[0]) / 2, abs=0.05)
    assert frame["half"] == pytest.approx(max(hi - lo) / 2 * 1.08, rel=0.02)
    assert page.evaluate("() => window.__latentExplorer.map.hidden.size") == 0  # ...is the old model's
    labels = page.locator(".st-key-atlas_map .lx-legend-item").all_inner_texts()
    assert labels[0] == "Activities" and len(labels) == 9
    # the controls, rebuilt for 64 × 64 RGB images, offer the pad's planes again
    planes = page.get_by_role("combobox", name="pad plane")
    page.wait_for_function("() => window.__latentExplorer.controls.planeSelect.options.length > 0")
    assert planes.input_value() == "PC1 × PC2" and planes.locator("option").count() == 29
