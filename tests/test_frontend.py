"""frontend/'s pure functions against their Python twins, in headless chromium: the sliders'
grid (latent.js snapLatent, explorer.latent.snap_latent), the bundle's reader (bundle.js against
explorer.live.browser_bundle, with the constants Python writes) and the star's placement."""

from __future__ import annotations

import json

import numpy as np
import pytest

from explorer.atlas import Atlas, place_on_map
from explorer.latent import snap_latent
from explorer.live import FRONTEND_FILES, browser_bundle, frontend_script
from tests.browser_support import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import ROOT

sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def page():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_content("<html><body></body></html>")
        yield page
        browser.close()


def run_script(page, body: str, arg: object) -> object:
    """BODY evaluated inside the component's script (its functions in scope), with ARG as `arg`."""
    script = frontend_script(ROOT / "frontend").replace("export default function", "function mountComponent")
    return page.evaluate(f"(arg) => {{ {script}\n{body} }}", arg)


def test_the_script_is_the_frontend_files_in_order_after_pythons_constants() -> None:
    script = frontend_script(ROOT / "frontend")
    shared = json.loads(script.splitlines()[0].removeprefix("const SHARED = ").removesuffix(";"))
    assert shared == {"bundle": {"magic": "LEXB", "headerStart": 8, "align": 4}, "latentDecimals": 2}
    positions = [script.index(f"// ---- frontend/{name}\n") for name in FRONTEND_FILES]
    assert positions == sorted(positions) and script.count("export default function") == 1


def test_the_browser_snaps_a_latent_exactly_as_python_does(page) -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.uniform(-4, 4, 300), np.arange(-300, 301) / 100 + 0.005, [0.125, -0.125, 2.675]])
    low, high = np.full(len(values), -3.0), np.full(len(values), 3.0)
    browser = run_script(
        page, "return snapLatent(arg[0], arg[1], arg[2]);", [values.tolist(), low.tolist(), high.tolist()]
    )
    assert browser == snap_latent(values, low, high).tolist()  # bit for bit, halves to even included


def test_the_browser_reads_pythons_bundle(page) -> None:
    means = np.arange(30, dtype=np.float32).reshape(10, 3) / 7
    embedding = np.arange(20, dtype=np.float32).reshape(10, 2) / 3
    bundle_id, data = browser_bundle(b"onnx bytes", means, embedding)
    parsed = run_script(
        page,
        """const b = parseBundle(new Uint8Array(arg));
        return {id: b.id, onnx: new TextDecoder().decode(b.onnx), n: b.n, d: b.d,
                means: Array.from(b.means), embedding: Array.from(b.embedding)};""",
        list(data),
    )
    assert parsed["id"] == bundle_id and parsed["onnx"] == "onnx bytes" and (parsed["n"], parsed["d"]) == (10, 3)
    assert np.array_equal(np.array(parsed["means"], np.float32), means.ravel())
    assert np.array_equal(np.array(parsed["embedding"], np.float32), embedding.ravel())
    assert run_script(page, "return parseBundle(new Uint8Array(arg));", list(b"LEXX" + data[4:])) is None


def test_the_star_lands_where_python_places_it(page) -> None:
    rng = np.random.default_rng(1)
    means = rng.normal(size=(200, 8)).astype(np.float32)
    embedding = rng.normal(size=(200, 2)).astype(np.float32) * 5
    _, data = browser_bundle(b"x", means, embedding)
    atlas = Atlas(means=means, labels=np.zeros(200, np.int64), embedding=embedding, index=np.arange(200))
    latents = rng.normal(size=(5, 8)).astype(np.float32)
    browser = run_script(
        page,
        "const b = parseBundle(new Uint8Array(arg[0])); return arg[1].map((z) => placeOnMap(b, z));",
        [list(data), latents.tolist()],
    )
    expected = [place_on_map(atlas, z) for z in latents]
    assert np.allclose(browser, expected, atol=1e-4)
