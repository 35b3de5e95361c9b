"""frontend/'s pure functions against their Python twins, in headless chromium: the sliders'
grid (latent.js snapLatent, explorer.latent.snap_latent), the concept slider's arithmetic (latent.js,
explorer.concept), the bundles' reader (bundle.js against explorer.live's bundles, with the
constants Python writes), the star's placement, and the map's search, export and framing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from explorer.atlas import Atlas, place_on_map
from explorer.concept import Concept
from explorer.latent import snap_latent
from explorer.live import FRONTEND_FILES, browser_bundle, frontend_script, points_bundle, thumbnails_bundle
from explorer.map_index import kdbush_index, map_frame, plot_positions
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


def test_the_browser_moves_along_a_concept_as_python_does(page) -> None:
    rng = np.random.default_rng(1)
    means = rng.normal(size=(50, 8)).astype(np.float32)
    concept = Concept("a → b", means[:10].mean(axis=0), means[10:20].mean(axis=0))
    low, high = np.full(8, -1.5), np.full(8, 1.5)
    z = rng.uniform(-1, 1, 8)
    origin, u = concept.to_json()["origin"], concept.to_json()["u"]
    browser = run_script(
        page,
        "const [z, means, origin, u, low, high] = arg;"
        "return {t: conceptPosition(z, origin, u), moved: conceptMove(z, 0.7, origin, u, low, high),"
        " projections: Array.from(conceptProjections(Float32Array.from(means.flat()), 50, 8, origin, u))};",
        [z.tolist(), means.tolist(), origin, u, low.tolist(), high.tolist()],
    )
    assert browser["t"] == pytest.approx(concept.position(z), abs=1e-9)
    assert browser["moved"] == pytest.approx(np.clip(concept.move(z, 0.7), low, high).tolist(), abs=1e-9)
    assert browser["projections"] == pytest.approx(concept.projections(means).tolist(), rel=1e-5, abs=1e-6)
    assert concept.position(np.clip(concept.move(z, 0.7), -9, 9)) == pytest.approx(0.7)  # unclamped, t lands


def test_the_browser_reads_pythons_bundles(page) -> None:
    bundle_id, data = browser_bundle(b"onnx bytes")
    parsed = run_script(
        page,
        "const b = parseBundle(new Uint8Array(arg)); return [b.id, new TextDecoder().decode(b.onnx), b.n];",
        list(data),
    )
    assert parsed == [bundle_id, "onnx bytes", None]
    assert run_script(page, "return parseBundle(new Uint8Array(arg));", list(b"LEXX" + data[4:])) is None
    means = np.arange(30, dtype=np.float32).reshape(10, 3) / 7
    embedding = np.arange(20, dtype=np.float32).reshape(10, 2) / 3
    labels, index = np.arange(10) % 4, np.arange(10) * 3
    names = tuple(f'émoji {k}, "quoted"' for k in range(10))
    points_id, data = points_bundle(means, embedding, labels, index, names)
    parsed = run_script(
        page,
        """const b = parseBundle(new Uint8Array(arg));
        return {id: b.id, onnx: b.onnx, n: b.n, d: b.d, means: Array.from(b.means), embedding: Array.from(b.embedding),
                labels: Array.from(b.labels), index: Array.from(b.index), names: b.names, frame: b.frame,
                positions: Array.from(b.positions), spatialIndex: Array.from(new Uint8Array(b.spatialIndex))};""",
        list(data),
    )
    assert parsed["id"] == points_id and parsed["onnx"] is None and (parsed["n"], parsed["d"]) == (10, 3)
    assert np.array_equal(np.array(parsed["means"], np.float32), means.ravel())
    assert np.array_equal(np.array(parsed["embedding"], np.float32), embedding.ravel())
    assert parsed["labels"] == labels.tolist() and parsed["index"] == index.tolist() and parsed["names"] == list(names)
    frame = map_frame(embedding)
    assert [parsed["frame"][k] for k in ("cx", "cy", "half")] == list(frame)
    assert np.array_equal(np.array(parsed["positions"], np.float32), plot_positions(embedding, frame).ravel())
    assert bytes(parsed["spatialIndex"]) == kdbush_index(plot_positions(embedding, frame))


def test_the_star_lands_where_python_places_it(page) -> None:
    rng = np.random.default_rng(1)
    means = rng.normal(size=(200, 8)).astype(np.float32)
    embedding = rng.normal(size=(200, 2)).astype(np.float32) * 5
    _, data = points_bundle(means, embedding, np.zeros(200), np.arange(200))
    atlas = Atlas(means=means, labels=np.zeros(200, np.int64), embedding=embedding, index=np.arange(200))
    latents = rng.normal(size=(5, 8)).astype(np.float32)
    browser = run_script(
        page,
        "const b = parseBundle(new Uint8Array(arg[0])); return arg[1].map((z) => placeOnMap(b, z));",
        [list(data), latents.tolist()],
    )
    expected = [place_on_map(atlas, z) for z in latents]
    assert np.allclose(browser, expected, atol=1e-4)


def test_the_maps_grid_finds_the_same_nearest_points_as_a_full_search(page) -> None:
    rng = np.random.default_rng(2)
    # clusters and empty space between them, like a UMAP map; queries inside, between and outside
    embedding = np.concatenate([rng.normal(c, 0.3, size=(300, 2)) for c in ((0, 0), (6, 1), (2, 7))]).astype(np.float32)
    queries = np.concatenate([rng.uniform(-3, 10, size=(40, 2)), embedding[:5], [[40.0, -40.0]]])
    browser = run_script(
        page,
        "const index = new MapIndex(Float32Array.from(arg[0].flat()), arg[0].length);"
        "return arg[1].map(([x, y]) => index.nearest(x, y, 8).map(([, row]) => row));",
        [embedding.tolist(), queries.tolist()],
    )
    for query, rows in zip(queries, browser):
        distances = np.linalg.norm(embedding.astype(np.float64) - query, axis=1)
        assert np.allclose(np.sort(distances)[:8], distances[rows], atol=1e-5)


def test_the_latent_under_a_map_position_is_the_weighted_mean_of_its_neighbours(page) -> None:
    rng = np.random.default_rng(3)
    means = rng.normal(size=(500, 8)).astype(np.float32)
    embedding = rng.uniform(-10, 10, size=(500, 2)).astype(np.float32)
    _, data = points_bundle(means, embedding, np.zeros(500), np.arange(500))
    queries = [[0.5, 0.5], [-9.0, 9.5], embedding[7].tolist(), [30.0, 0.0]]
    found = run_script(
        page,
        """const b = parseBundle(new Uint8Array(arg[0])); const index = new MapIndex(b.embedding, b.n);
        return {spacing: index.spacing,
                at: arg[1].map(([x, y]) => { const f = latentAtMapPoint(b, index, x, y);
                                               return {z: Array.from(f.z), gap: f.gap}; })};""",
        [list(data), queries],
    )
    gaps = []
    for row in range(500):
        d = np.linalg.norm(embedding - embedding[row], axis=1)
        d[row] = np.inf
        gaps.append(d.min())
    assert found["spacing"] == pytest.approx(np.median(gaps), rel=0.02)
    for query, result in zip(queries, found["at"]):
        d2 = np.sum((embedding.astype(np.float64) - query) ** 2, axis=1)
        nearest = np.argsort(d2)[:32]
        if d2[nearest[0]] < 1e-12:  # on a point: exactly its mean
            np.testing.assert_array_equal(np.array(result["z"], np.float32), means[nearest[0]])
        else:
            weights = 1 / np.sqrt(d2[nearest])
            np.testing.assert_allclose(result["z"], weights @ means[nearest] / weights.sum(), atol=1e-5)
        assert result["gap"] == pytest.approx(np.sqrt(d2[nearest[0]]) / found["spacing"], rel=1e-4)
    assert found["at"][3]["gap"] > 3  # far outside the map: a sparse region


def test_the_browser_reads_the_thumbnail_sheet_bundle(page) -> None:
    bundle_id, data = thumbnails_bundle(b"\x89PNG sheet", 7, 45)
    parsed = run_script(
        page,
        """const b = parseBundle(new Uint8Array(arg)); return {id: b.id, onnx: b.onnx,
           png: Array.from(b.thumbnails.png), count: b.thumbnails.count, columns: b.thumbnails.columns};""",
        list(data),
    )
    assert parsed == {"id": bundle_id, "onnx": None, "png": list(b"\x89PNG sheet"), "count": 45, "columns": 7}


SEARCH_LAYERS = """const [test, train] = arg.bundles.map((bytes) => parseBundle(new Uint8Array(bytes)));
    const layers = [{split: "test", bundle: test}, {split: "training", bundle: train}];"""


def search_bundles() -> list[list[int]]:
    """A test split of 6 named images of classes 0-2 and a training split of 4, as map layers."""
    test = points_bundle(
        np.arange(12, dtype=np.float32).reshape(6, 2),
        np.arange(12, dtype=np.float32).reshape(6, 2) / 2,
        np.array([0, 1, 2, 0, 1, 2]),
        np.array([10, 11, 12, 13, 14, 15]),
        ("grinning face", "wave, light skin tone", "red apple", "smiling cat", 'say "hi", ok', "grinning cat"),
    )[1]
    train = points_bundle(
        np.ones((4, 2), np.float32), np.zeros((4, 2), np.float32), np.array([2, 2, 1, 0]), np.arange(4)
    )[1]
    return [list(test), list(train)]


@pytest.mark.parametrize(
    ("query", "rows"),
    [
        ("Smileys", [0, 3, 6 + 3]),  # a class by its name, any case, in both splits
        ("#12", [2]),  # a test image by its index
        ("13", [3]),
        ("train 1", [6 + 1]),  # a training image by its index
        ("train #3", [6 + 3]),
        ("GRINNING", [0, 5]),  # the images whose name holds the text
        ("objects", [2, 5, 6, 7]),  # no name holds it: the classes whose name does
        ("#99", []),
        ("zebra", []),
    ],
)
def test_the_maps_search_finds_points_by_class_index_and_name(page, query: str, rows: list[int]) -> None:
    found = run_script(
        page,
        SEARCH_LAYERS + "return findPoints(layers, arg.classes, arg.query);",
        {"bundles": search_bundles(), "classes": ["Smileys", "People", "Food & Objects"], "query": query},
    )
    assert found["rows"] == rows
    assert found["said"].startswith(("No ", "Nothing ")) == (not rows)  # a miss says so


def test_the_maps_export_writes_the_selected_rows_as_csv(page) -> None:
    text = run_script(
        page,
        SEARCH_LAYERS + "return selectionCsv(layers, arg.classes, [4, 7]);",
        {"bundles": search_bundles(), "classes": ["Smileys", "People", "Food & Objects"]},
    )
    import csv  # noqa: PLC0415
    import io  # noqa: PLC0415

    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["split", "index", "label", "name", "z1", "z2", "x", "y"]
    assert rows[1] == ["test", "14", "People", 'say "hi", ok', "8", "9", "4", "4.5"]
    assert rows[2] == ["training", "1", "Food & Objects", "", "1", "1", "0", "0"]
    assert len(rows) == 3
