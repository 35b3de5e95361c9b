"""The page's logic through streamlit.testing.v1.AppTest (no browser), on the bundled model."""

import base64
import io
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image, ImageDraw
from streamlit.testing.v1 import AppTest

import ui.controls
from explorer.render import decode_latents
from tests.conftest import read_bundle
from training.checkpoint import load_model
from training.model import ModelConfig
from training.train import TrainConfig, train
from ui.bundles import published

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")


def run_app(query: dict[str, str] | None = None, live: bool = False) -> AppTest:
    """The page after its first run. live=False switches off the in-browser decoder (AppTest has
    no browser to run it), so the page shows the server-side sliders and image."""
    app = AppTest.from_file(APP, default_timeout=60)
    for key, value in (query or {}).items():
        app.query_params[key] = value
    app.session_state["live_decoding"] = live
    app.run()
    assert not app.exception, app.exception
    return app


def images(app: AppTest) -> list[tuple[str, str]]:
    """(url, caption) of each image on the page; the URL is a hash of the image bytes."""
    return [(i.url, i.caption) for element in app.get("image") for i in element.proto.imgs]


def image_url(app: AppTest) -> str:
    return images(app)[0][0]


def latent_sliders(app: AppTest) -> list:
    return [s for s in app.slider if s.label.startswith("z")]


def test_page_shows_eight_sliders_and_the_decoded_image() -> None:
    app = run_app()
    assert [s.label for s in latent_sliders(app)] == [f"z{i}" for i in range(1, 9)]
    assert all(s.value == 0.0 for s in latent_sliders(app))
    for s in latent_sliders(app):  # the range covers about ±3 sd of the encoded means
        assert s.min < -1.0 and s.max > 1.0
    captions = [caption for _, caption in images(app)]
    assert captions[0] == "decoder(z)"
    assert any("steps, slerp" in c for c in captions)  # the interpolation strip
    assert app.query_params["model"] == "mnist-z8-sharp"  # the sharpened decoder, where a model has one


def test_a_slider_change_changes_the_image() -> None:
    app = run_app()
    before = image_url(app)
    latent_sliders(app)[0].set_value(1.5).run()
    assert not app.exception
    after = image_url(app)
    assert after != before  # the media URL is a hash of the PNG bytes
    assert app.query_params["z"].startswith("1.500,")
    latent_sliders(app)[0].set_value(0.0).run()
    assert image_url(app) == before  # same z, same bytes


def test_random_changes_all_eight_values_and_origin_resets() -> None:
    app = run_app()
    random_button = next(b for b in app.button if b.label == "Random")
    random_button.click().run()
    values = [s.value for s in latent_sliders(app)]
    assert all(v != 0.0 for v in values), values
    next(b for b in app.button if b.label == "Origin").click().run()
    assert [s.value for s in latent_sliders(app)] == [0.0] * 8


def test_encode_a_test_image_by_index() -> None:
    app = run_app()
    app.number_input(key="test_index").set_value(7).run()
    next(b for b in app.button if b.label == "Encode it").click().run()
    values = np.array([s.value for s in latent_sliders(app)])
    assert np.abs(values).sum() > 0.5


@pytest.mark.parametrize("z", ["nan,0,0,0,0,0,0,0", "1,2", "hello", "1e999,0,0,0,0,0,0,0"])
def test_bad_latent_in_the_url_gives_a_warning_and_the_origin(z: str) -> None:
    app = run_app({"z": z})
    assert [s.value for s in latent_sliders(app)] == [0.0] * 8
    assert any("link" in w.value for w in app.warning)


def test_out_of_range_latent_in_the_url_is_clamped() -> None:
    app = run_app({"z": "1000,-1000,0.5,0,0,0,0,0", "view": "nonsense", "model": "../../etc"})
    values = [s.value for s in latent_sliders(app)]
    sliders = latent_sliders(app)
    assert values[0] == pytest.approx(sliders[0].max, abs=1e-3)
    assert values[1] == pytest.approx(sliders[1].min, abs=1e-3)
    assert values[2] == pytest.approx(0.5)
    warnings = " ".join(w.value for w in app.warning)
    assert "clamped" in warnings and "Unknown view" in warnings and "not here" in warnings


def test_a_good_link_restores_the_latent() -> None:
    app = run_app({"z": "0.5,-0.25,0,0,0,0,0,1", "view": "traverse"})
    assert [s.value for s in latent_sliders(app)] == [0.5, -0.25, 0, 0, 0, 0, 0, 1.0]
    assert not app.warning
    assert any("sweeps" in caption for _, caption in images(app))


def test_the_page_says_which_latents_a_model_leaves_unused() -> None:
    # fashion-z8's z7 varies by 0.009 (sd) over the test set, and its decoder ignores it
    app = run_app({"model": "fashion-z8", "view": "traverse"})
    sidebar = " ".join(c.value for c in app.sidebar.caption)
    assert "7 of 8 latents in use: z7 is not. The encoder gives it nearly the same value" in sidebar
    assert any(caption.endswith("7 of 8 latents in use: z7 is not.") for _, caption in images(app))
    assert [s.label for s in latent_sliders(app)][5:] == ["z6", "z7 (unused)", "z8"]  # the server's sliders
    assert live_payloads(run_app({"model": "fashion-z8"}, live=True))[1]["unused"] == [6]  # the browser's
    app = run_app({"view": "traverse"})  # mnist-z8 uses all eight: nothing said
    assert "latents in use" not in " ".join(c.value for c in app.sidebar.caption)
    assert not any("in use" in caption for _, caption in images(app))
    assert [s.label for s in latent_sliders(app)] == [f"z{i}" for i in range(1, 9)]
    assert live_payloads(run_app(live=True))[1]["unused"] == []


def test_a_broken_checkpoint_shows_its_error_and_keeps_the_model(tmp_path: Path) -> None:
    app = run_app()
    (tmp_path / "config.json").write_text("{broken")
    app.text_input(key="model_path").set_value(str(tmp_path)).run()
    assert not app.exception
    assert any("not valid JSON" in e.value for e in app.sidebar.error)
    assert len(latent_sliders(app)) == 8 and images(app)[0][1] == "decoder(z)"
    latent_sliders(app)[3].set_value(1.0).run()
    assert not app.exception


def strip_caption(app: AppTest) -> str:
    return next(caption for _, caption in images(app) if "steps, " in caption)


def test_the_interpolation_strip_says_what_its_endpoints_are() -> None:
    app = run_app()
    # the page starts between the first two test images of MNIST, a 7 and a 2
    assert strip_caption(app) == "test image #0 (7) → test image #1 (2) · 10 steps, slerp"
    app.selectbox(key="source_a").set_value("test image").run()
    app.number_input(key="index_a").set_value(3).run()
    assert strip_caption(app).startswith("test image #0 (7) → ")  # choosing a source sets nothing yet
    next(b for b in app.button if b.label == "Set A").click().run()
    assert strip_caption(app) == "test image #3 (0) → test image #1 (2) · 10 steps, slerp"
    app.selectbox(key="source_b").set_value("current z").run()
    next(b for b in app.button if b.label == "Set B").click().run()
    app.radio(key="method").set_value("lerp").run()
    assert not app.exception
    assert strip_caption(app) == "test image #3 (0) → the sliders' z · 10 steps, lerp"


def map_payload(app: AppTest) -> dict:
    """The JSON the map component got on the last run."""
    (element,) = [e.proto for e in app.get("bidi_component") if e.proto.component_name == "latent_explorer.atlas_map"]
    return json.loads(element.json)


def served_bundle(bundle_id: str) -> tuple[dict, dict]:
    """(header, sections) of the bundle the page publishes for the browser at BUNDLE_ID."""
    data = published(bundle_id)
    assert data is not None, f"bundle {bundle_id} is not published"
    header, sections = read_bundle(data)
    assert header["id"] == bundle_id
    return header, sections


def test_the_map_draws_the_interpolation_path_only_under_its_view() -> None:
    app = run_app()
    path = map_payload(app)["path"]
    assert len(path) == 10 and all(len(p) == 2 for p in path)  # the 10 steps' map positions
    for view in ("traverse", "anomaly", None):
        app.button_group(key="view").set_value(view).run()
        assert not app.exception
        assert map_payload(app)["path"] is None, view
    app.button_group(key="view").set_value("interpolate").run()
    assert map_payload(app)["path"] == path


def test_the_map_gets_its_points_once_as_binary_and_json_on_each_run() -> None:
    app = run_app({"z": "0.5,-0.25,0,0,0,0,0,1"})
    payload = map_payload(app)
    assert payload["classes"] == [str(k) for k in range(10)] and payload["colours"][:2] == ["#4e79a7", "#f28e2b"]
    assert payload["latent"] == pytest.approx([0.5, -0.25, 0, 0, 0, 0, 0, 1.0])
    assert payload["scatter_url"] == "/app/static/scatter/regl-scatterplot.mjs" and payload["shape"] == [1, 28, 28]
    header, sections = served_bundle(payload["points_id"])
    assert header["sections"]["means"]["shape"] == [10_000, 8] and header["sections"]["labels"]["shape"] == [10_000]
    header, sections = served_bundle(payload["thumbnails_id"])
    assert header["sections"]["thumbnails"]["shape"] == [10_000, 100]
    assert Image.open(io.BytesIO(sections["thumbnails"])).size == (2800, 2800)
    # the training split: sent only while the switch is on, on the same map
    assert payload["train_points_id"] is None
    app.toggle(key="map_everything").set_value(True).run()
    payload = map_payload(app)
    header, _ = served_bundle(payload["train_points_id"])
    assert header["sections"]["embedding"]["shape"] == [60_000, 2]
    assert any(c.value.startswith("70,000 encoded images, laid out by UMAP") for c in app.caption)


def test_deselecting_the_view_shows_neither_and_keeps_working() -> None:
    app = run_app()
    app.button_group(key="view").set_value(None).run()
    assert not app.exception
    assert [caption for _, caption in images(app)] == ["decoder(z)"]
    latent_sliders(app)[1].set_value(0.5).run()
    assert not app.exception and app.query_params["view"] == "interpolate"


def live_payloads(app: AppTest) -> tuple[bytes, dict]:
    """(the decoder's bundle as served, controls JSON) of the in-browser decoder."""
    elements = [e.proto for e in app.get("bidi_component")]
    payload = json.loads(next(e for e in elements if e.component_name == "latent_explorer.live_latent").json)
    return published(payload["bundle_id"]), payload


def test_live_mode_sends_the_decoder_and_the_latent_to_the_browser() -> None:
    app = run_app({"z": "0.5,-0.25,0,0,0,0,0,1"}, live=True)
    assert not latent_sliders(app)  # the browser draws the controls
    bundle, payload = live_payloads(app)
    header, sections = read_bundle(bundle)
    assert header["id"] == payload["bundle_id"]
    onnx_model = onnx.load_from_string(sections["onnx"])
    assert [i.name for i in onnx_model.graph.input] == ["z"]
    assert set(header["sections"]) == {"onnx"}  # the decoder alone: the map's points travel on their own
    assert payload["points_id"] == map_payload(app)["points_id"]  # the controls' concept strip reads them
    assert payload["latent"] == [0.5, -0.25, 0, 0, 0, 0, 0, 1.0]
    assert payload["shape"] == [1, 28, 28] and len(payload["low"]) == 8
    assert payload["principal"]["name"] == "PC1 × PC2"
    assert payload["asset_url"] == "/app/static/ort/" and payload["bundle_url"] == "/bundles/"
    # the server's decode of z (8-bit C·H·W values), which the browser draws before its own decoder runs
    model = load_model(app.session_state["active_folder"])
    decoded = decode_latents(model, np.array(payload["latent"], np.float32))[0].transpose(2, 0, 1)
    assert np.frombuffer(base64.b64decode(payload["image"]), np.uint8).tolist() == decoded.ravel().tolist()
    assert decoded.std() > 10  # a digit, not a blank
    # no bundle travels in the page's messages: the controls' and the map's JSON only
    elements = [e.proto for e in app.get("bidi_component")]
    assert [e.component_name for e in elements] == ["latent_explorer.live_latent", "latent_explorer.atlas_map"]
    assert all(len(e.json) < 20_000 and not e.bytes for e in elements)
    # Random sets the latent from Python: a new revision tells the browser to move its controls.
    next(b for b in app.button if b.label == "Random").click().run()
    _, after = live_payloads(app)
    assert after["revision"] == payload["revision"] + 1
    assert after["latent"] != payload["latent"]
    assert after["image"] is None  # the server decodes z once per decoder sent; the browser draws it since
    assert app.query_params["z"] == ",".join(f"{v:.3f}" for v in after["latent"])


class Pauses:
    """Stands in for ui.controls' time module: records the sleeps."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def test_a_new_sessions_first_run_pauses_once_after_the_controls(monkeypatch: pytest.MonkeyPatch) -> None:
    """So that the browser draws the controls before the rest of the first run arrives: one
    pause, on the session's first run only."""
    pauses = Pauses()
    monkeypatch.setattr(ui.controls, "time", pauses)
    app = run_app(live=True)
    assert pauses.slept == [ui.controls.FIRST_PAINT_PAUSE_S]
    next(b for b in app.button if b.label == "Random").click().run()
    app.sidebar.selectbox(key="model_choice").set_value("fashion-z8").run()
    assert pauses.slept == [ui.controls.FIRST_PAINT_PAUSE_S]  # later runs, another model: none
    assert not app.exception


def test_switching_live_decoding_off_shows_the_server_sliders() -> None:
    app = run_app({"z": "0.5,-0.25,0,0,0,0,0,1"}, live=True)
    app.sidebar.toggle(key="live_decoding").set_value(False).run()
    assert [s.value for s in latent_sliders(app)] == [0.5, -0.25, 0, 0, 0, 0, 0, 1.0]
    assert images(app)[0][1] == "decoder(z)"


@pytest.mark.parametrize("view", ["interpolate", "traverse", "anomaly"])
def test_every_view_works_on_the_bundled_rgb_model(view: str) -> None:
    app = run_app({"model": "emoji-rgb-z8", "view": view})
    assert any("3×64×64" in c.value for c in app.sidebar.caption)
    assert len(latent_sliders(app)) == 8
    next(b for b in app.button if b.label == "Random").click().run()
    assert not app.exception
    if view == "anomaly":  # an RGB model takes uploads only, no digit pad
        assert app.radio(key="anomaly_source").options == ["upload"]
        # and the view names the command that ranks a whole folder with this model
        assert any(
            "`python -m training score checkpoints/emoji-rgb-z8 FOLDER --sheet worst.png`" in c.value
            for c in app.caption
        )
    else:
        assert len(images(app)) == 2  # decoder(z) and the strip or the grid


def test_the_picker_lists_every_bundled_model() -> None:
    app = run_app()
    assert app.sidebar.selectbox(key="model_choice").options == [
        "emoji-rgb-z8",
        "emoji-rgb-z8-sharp",
        "fashion-z8",
        "fashion-z8-sharp",  # a sharpened decoder is an entry of its own
        "mnist-cvae-z8",
        "mnist-cvae-z8-sharp",
        "mnist-z8",
        "mnist-z8-sharp",
    ]


def test_random_fitted_draws_from_the_checkpoints_mixture() -> None:
    app = run_app()
    next(b for b in app.button if b.label == "Random (fitted)").click().run()
    values = np.array([s.value for s in latent_sliders(app)])
    assert not app.exception and np.abs(values).sum() > 0.5


def test_a_conditional_model_gets_a_class_picker() -> None:
    app = run_app({"model": "mnist-cvae-z8"})
    picker = app.button_group(key="class_label")
    assert picker.options == [str(k) for k in range(10)] or len(picker.options) == 10
    before = image_url(app)
    picker.set_value(7).run()
    assert not app.exception and image_url(app) != before  # the same z drawn as another class
    app = run_app({"model": "mnist-cvae-z8"}, live=True)
    _, payload = live_payloads(app)
    assert payload["num_classes"] == 10 and payload["label"] == 0


def png_file(image: "Image.Image") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_several_uploads_are_ranked_and_the_picked_one_is_inspected() -> None:
    app = run_app({"view": "anomaly"})
    app.radio(key="anomaly_source").set_value("upload").run()
    one = Image.new("L", (300, 400), 230)
    ImageDraw.Draw(one).line([(150, 40), (140, 360)], fill=10, width=30)  # a dark one on paper
    zero = Image.new("L", (300, 300), 230)
    ImageDraw.Draw(zero).ellipse([(60, 40), (240, 260)], outline=10, width=30)
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
    app.file_uploader(key="anomaly_upload").set_value(
        [
            ("one.png", png_file(one), "image/png"),
            ("noise.png", png_file(noise), "image/png"),
            ("zero.png", png_file(zero), "image/png"),
            ("broken.png", b"not a PNG at all", "image/png"),
        ]
    ).run()
    assert not app.exception, app.exception
    # the broken file gets its sentence; the three others are ranked, the noise first
    assert [e.value for e in app.error] == [
        "broken.png: is not a readable PNG or JPEG image (checked by its content, not its name)."
    ]
    table = app.dataframe[0].value
    assert list(table["file"])[0] == "noise.png" and sorted(table["file"]) == ["noise.png", "one.png", "zero.png"]
    assert list(table["rank"]) == [1, 2, 3] and list(table["score"]) == sorted(table["score"], reverse=True)
    assert table["above"].iloc[0] > 99 and all(0 <= a <= 100 for a in table["above"])
    assert all(cell.startswith("data:image/png;base64,") for cell in table["image"])
    # the ranking downloads as CSV, in the same order, with the score command's column names
    download = next(b for b in app.get("download_button") if "ranking" in b.proto.label)
    assert download.proto.label == "Download the ranking (CSV)"
    # the most anomalous is inspected first, and its latent loaded; picking another moves z
    pick = app.selectbox(key="anomaly_pick")
    assert pick.format_func(pick.value) == "#1 noise.png"
    assert "Anomaly score:" in app.markdown[-1].value and f"{table['score'].iloc[0]:.1f} nats" in app.markdown[-1].value
    noise_z = app.session_state["latent"].copy()
    assert np.abs(noise_z).max() > 0
    assert [o.split(" ")[1] for o in pick.options] == list(table["file"])  # "#1 noise.png", … in rank order
    pick.set_value(2).run()  # the value is the file's position among the usable uploads: zero.png
    assert not app.exception
    assert not np.array_equal(app.session_state["latent"], noise_z)
    assert f"{table['score'].iloc[list(table['file']).index('zero.png')]:.1f} nats" in app.markdown[-1].value


def test_too_many_uploads_are_refused_with_the_command_for_a_folder() -> None:
    app = run_app({"view": "anomaly", "model": "mnist-z8"})
    app.radio(key="anomaly_source").set_value("upload").run()
    blank = png_file(Image.new("L", (28, 28)))
    app.file_uploader(key="anomaly_upload").set_value([(f"{i}.png", blank, "image/png") for i in range(101)]).run()
    assert not app.exception
    assert len(app.error) == 1 and "up to 100 at a time" in app.error[0].value
    assert "python -m training score checkpoints/mnist-z8 FOLDER" in app.error[0].value
    assert not app.dataframe


def test_uploads_are_decoded_and_scored_once_not_on_every_rerun(monkeypatch: pytest.MonkeyPatch) -> None:
    # Decoding a 12-megapixel photograph takes 0.1-0.3 s and the page reruns on every release
    # of a slider or click of a button: each upload is decoded and scored once, then served
    # from the cache, however many clicks follow.
    import streamlit as st

    from ui.views import anomaly

    decoded, scored = [], []
    original, original_score = anomaly.model_input, anomaly.score_images

    def counting(image, channels, size, digits):
        decoded.append(image.size)
        return original(image, channels, size, digits)

    def counting_scores(model, x):
        scored.append(len(x))
        return original_score(model, x)

    monkeypatch.setattr(anomaly, "model_input", counting)
    monkeypatch.setattr(anomaly, "score_images", counting_scores)
    st.cache_data.clear()
    app = run_app({"view": "anomaly"})
    app.radio(key="anomaly_source").set_value("upload").run()
    digits = [Image.new("L", (40 + i, 40), 230) for i in range(3)]
    for digit in digits:
        ImageDraw.Draw(digit).line([(20, 5), (18, 35)], fill=10, width=4)
    app.file_uploader(key="anomaly_upload").set_value(
        [(f"{i}.png", png_file(d), "image/png") for i, d in enumerate(digits)]
    ).run()
    assert len(app.dataframe) == 1 and len(decoded) == 3
    for _ in range(2):
        next(b for b in app.button if b.label == "Origin").click().run()
        assert not app.exception
    assert len(app.dataframe) == 1 and sorted(decoded) == [(40, 40), (41, 40), (42, 40)]
    assert scored == [3]


def test_a_conditional_model_scores_an_upload_as_the_class_that_explains_it_best() -> None:
    app = run_app({"model": "mnist-cvae-z8", "view": "anomaly"})
    assert app.button_group(key="class_label").value == 0
    app.radio(key="anomaly_source").set_value("upload").run()
    seven = Image.new("L", (300, 300), 230)
    ImageDraw.Draw(seven).line([(60, 50), (240, 50), (130, 270)], fill=10, width=28)  # a dark 7 on paper
    app.file_uploader(key="anomaly_upload").set_value(("seven.png", png_file(seven), "image/png")).run()
    assert not app.exception, app.exception
    # read as a 7: the class picker moves there, with the style (z) the encoder gave it
    assert "reads it as a **7**" in app.markdown[-1].value
    assert app.button_group(key="class_label").value == 7
    assert np.abs(app.session_state["latent"]).max() > 0
    assert "more anomalous than" in app.markdown[-1].value  # against the atlas's test-set scores
    # several: the table says what each one reads as
    one = Image.new("L", (300, 400), 230)
    ImageDraw.Draw(one).line([(150, 40), (140, 360)], fill=10, width=30)
    app.file_uploader(key="anomaly_upload").set_value(
        [("seven.png", png_file(seven), "image/png"), ("one.png", png_file(one), "image/png")]
    ).run()
    table = app.dataframe[0].value
    assert dict(zip(table["file"], table["label"])) == {"seven.png": "7", "one.png": "1"}


def history_charts(app: AppTest) -> list[dict]:
    """The page's history figures (their plotly JSON), told apart by their traces."""
    figures = [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]
    return [f for f in figures if any(trace.get("name") == "test −ELBO" for trace in f["data"])]


def test_the_training_view_shows_the_recipe_the_command_and_the_history(tiny_mnist: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = TrainConfig(epochs=3, batch_size=32, seed=4)
    train(ModelConfig(conv_channels=(4, 8, 8), hidden_dim=16), config, out, data_dir=tiny_mnist, progress=False)
    app = run_app({"view": "training"})
    app.text_input(key="model_path").set_value(str(out)).run()
    assert not app.exception
    assert any(
        m.value.startswith("Trained on mnist, 3 epochs of batch 32 (24 steps): Adam at lr 0.002") for m in app.markdown
    )
    assert [c.value for c in app.code] == [
        "python -m training train --out runs/run --epochs 3 --batch-size 32 "
        "--seed 4 --conv-channels 4,8,8 --hidden-dim 16"
    ]
    (figure,) = history_charts(app)
    assert [trace["x"] for trace in figure["data"]] == [[1.0, 2.0, 3.0]] * 3
    assert any(c.value.startswith("3 evaluations over 3 epochs.") for c in app.caption)
    download = next(b for b in app.get("download_button") if "history" in b.proto.label)
    assert download.proto.label == "Download the history (CSV)"
    assert app.query_params["view"] == "training"

    # a history cut off mid-line says so, and the page stays up; none at all says why
    (out / "history.jsonl").write_text((out / "history.jsonl").read_text()[:-40])
    app.text_input(key="model_path").set_value(str(out) + "/").run()  # another path: a fresh load
    assert not app.exception
    assert [w.value for w in app.warning] == [
        f"{out}/history.jsonl: line 3 is not a history row (a JSON object with a step)."
    ]
    (out / "history.jsonl").unlink()
    app.text_input(key="model_path").set_value(str(out)).run()
    assert any(i.value.startswith("This checkpoint has no training history") for i in app.info)
    assert history_charts(app) == []
    # saved from Python with the model's config alone: no recipe claimed, no command
    bare = tmp_path / "bare"
    shutil.copytree(out, bare)
    config = json.loads((bare / "config.json").read_text())
    (bare / "config.json").write_text(json.dumps({key: config[key] for key in ("format", "model")}))
    app.text_input(key="model_path").set_value(str(bare)).run()
    assert not app.exception and not app.code
    assert any(i.value.startswith("This checkpoint does not record how it was trained") for i in app.info)


def test_a_typed_path_may_start_with_the_home_folder(
    tiny_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    train(
        ModelConfig(conv_channels=(4, 8, 8), hidden_dim=16, latent_dim=3),
        TrainConfig(epochs=1, batch_size=64),
        tmp_path / "runs" / "mine",
        data_dir=tiny_mnist,
        progress=False,
    )
    app = run_app()
    app.text_input(key="model_path").set_value("~/runs/mine").run()
    assert not app.exception and not app.sidebar.error
    assert [s.label for s in latent_sliders(app)] == ["z1", "z2", "z3"]
    assert any(c.value.startswith("mine: latent size 3") for c in app.sidebar.caption)


def test_a_sharpened_model_is_compared_with_its_parent_on_the_same_z(tiny_sharpened: Path) -> None:
    app = run_app()
    app.text_input(key="model_path").set_value(str(tiny_sharpened)).run()
    assert not app.exception, app.exception
    toggle = app.toggle(key="compare")
    assert toggle.label == "Compare with the VAE decoder (tiny)"
    assert images(app)[0][1] == "decoder(z)" and images(app)[1][1] != "VAE decoder · tiny"
    toggle.set_value(True).run()
    # the server's fallback: both decoders' images of the same z, each named
    assert [caption for _, caption in images(app)[:2]] == ["sharpened decoder · tiny-sharp", "VAE decoder · tiny"]
    assert images(app)[0][0] != images(app)[1][0]
    strips = [caption for _, caption in images(app) if "steps, slerp" in caption]  # the interpolation, twice
    assert [c.rsplit(" · ", 2)[-2:] for c in strips] == [["sharpened decoder", "tiny-sharp"], ["VAE decoder", "tiny"]]
    app.segmented_control(key="view").set_value("traverse").run()
    grids = [caption for _, caption in images(app) if "Row i sweeps" in caption]
    assert [c.split(":")[0] for c in grids] == ["sharpened decoder · tiny-sharp", "VAE decoder · tiny"]
    # live: both decoders go to the browser, the second as the controls' `compare`
    app.session_state["live_decoding"] = True
    app.run()
    components = [e.proto for e in app.get("bidi_component")]
    (controls,) = [json.loads(p.json) for p in components if p.component_name.endswith("live_latent")]
    bundles = [controls["bundle_id"], controls["compare"]["bundle_id"]]
    assert len(set(bundles)) == 2 and all(set(served_bundle(b)[0]["sections"]) == {"onnx"} for b in bundles)
    assert "means" in served_bundle(controls["points_id"])[0]["sections"]
    assert controls["caption"] == "sharpened decoder · tiny-sharp"
    assert controls["compare"]["caption"] == "VAE decoder · tiny"
    compared = np.frombuffer(base64.b64decode(controls["compare"]["image"]), np.uint8)
    assert compared.size == int(np.prod(controls["shape"])) and compared.std() > 0


def test_a_sharpened_models_anomaly_scores_use_its_parents_decoder(tiny_sharpened: Path) -> None:
    app = run_app({"view": "anomaly"})
    app.text_input(key="model_path").set_value(str(tiny_sharpened)).run()
    app.radio(key="anomaly_source").set_value("upload").run()
    square = Image.new("L", (28, 28))
    ImageDraw.Draw(square).rectangle([(4, 4), (11, 11)], fill=255)
    app.file_uploader(key="anomaly_upload").set_value(("square.png", png_file(square), "image/png")).run()
    assert not app.exception, app.exception
    assert "Scored with the parent's decoder (tiny), the calibrated likelihood" in app.markdown[-1].value


def test_the_training_view_of_a_sharpened_model_shows_its_recipe_command_and_curves() -> None:
    app = run_app({"model": "mnist-z8-sharp", "view": "training"})
    assert any(
        m.value.startswith(
            "The decoder of **mnist-z8**, a residual decoder (128, 64, 32, 16 channels) distilled from it for 6,000 "
            "steps, then sharpened adversarially"
        )
        for m in app.markdown
    )
    assert [c.value for c in app.code] == [
        "python -m training sharpen checkpoints/mnist-z8 --out runs/mnist-z8-sharp --steps 10000 "
        "--adversarial-start 6000 --seed 1 --eval-every 500"
    ]
    figures = [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]
    (curves,) = [f for f in figures if any(t.get("name") == "test MSE of decode(μ)" for t in f["data"])]
    assert [len(t["x"]) for t in curves["data"]] == [20, 20, 20]  # as the run evaluated, every 500 steps
    assert any(c.value.startswith("20 evaluations over 10,000 steps.") for c in app.caption)


def test_two_classes_make_a_concept_slider_that_moves_z_along_their_direction() -> None:
    app = run_app()
    app.selectbox(key="concept_from").set_value("1").run()
    assert not any(s.label.startswith("Concept") for s in app.slider)  # one group is no direction yet
    app.selectbox(key="concept_to").set_value("7").run()
    slider = next(s for s in app.slider if s.label.startswith("Concept 1 → 7"))
    concept = app.session_state["concept"]
    assert app.query_params["concept"].count(";") == 1
    before = np.array([s.value for s in latent_sliders(app)])
    slider.set_value(round(slider.value + 0.5, 2)).run()
    after = np.array([s.value for s in latent_sliders(app)])
    u = concept.direction / np.linalg.norm(concept.direction)
    moved = after - before
    assert np.linalg.norm(moved) > 0.3 and np.abs(moved - (moved @ u) * u).max() < 0.02
    # the link restores the direction; a broken one says so and the page keeps working
    linked = run_app({"concept": app.query_params["concept"]})
    np.testing.assert_allclose(linked.session_state["concept"].direction, concept.direction, atol=2e-3)
    assert any(s.label.startswith("Concept the link's direction") for s in linked.slider)
    broken = run_app({"concept": "1,2;3"})
    assert broken.session_state["concept"] is None
    assert any("concept direction in the link was left out" in w.value for w in broken.warning)


def test_selected_points_are_a_group_and_choosing_them_before_selecting_says_what_to_do() -> None:
    app = run_app()
    app.selectbox(key="concept_from").set_value("points selected on the map").run()
    app.selectbox(key="concept_to").set_value("0").run()
    assert app.session_state["concept"] is None
    assert any("No points are selected on the map" in w.value for w in app.warning)


def test_the_nearest_training_images_are_shown_with_their_distances(mnist_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("LATENT_EXPLORER_DATA", str(mnist_dir))
    app = run_app()
    app.number_input(key="test_index").set_value(5).run()
    next(b for b in app.button if b.label == "Encode it").click().run()
    app.toggle(key="show_neighbours").set_value(True).run()
    captions = [caption for _, caption in images(app) if caption.startswith("#")]
    assert len(captions) == 8 and all(" · d " in c for c in captions)
    distances = [float(c.split(" · d ")[1]) for c in captions]
    assert distances == sorted(distances)
    monkeypatch.setenv("LATENT_EXPLORER_DATA", str(mnist_dir.parent / "nowhere"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(mnist_dir.parent / "nowhere"))
    elsewhere = run_app()
    elsewhere.toggle(key="show_neighbours").set_value(True).run()
    assert any("The training images are not on this machine" in i.value for i in elsewhere.info)


def test_public_mode_hides_the_path_field_and_takes_models_by_listed_name_only(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LATENT_EXPLORER_PUBLIC", "1")
    app = run_app()
    assert not [t for t in app.sidebar.text_input if "folder" in t.label]
    assert app.sidebar.selectbox(key="model_choice").value == "mnist-z8-sharp"
    # a link naming a path, or a model that is not listed, shows the default and no path
    for wanted in ("/root", "../checkpoints/mnist-z8", "not-here"):
        app = run_app({"model": wanted})
        assert app.sidebar.selectbox(key="model_choice").value == "mnist-z8-sharp"
        assert any("names a model that is not here" in w.value for w in app.warning)
    # an operator's folder joins the list by its name, and the URL may choose it by that name
    listed = tmp_path / "class-model"
    shutil.copytree(ROOT / "checkpoints" / "mnist-z8", listed)
    monkeypatch.setenv("LATENT_EXPLORER_CHECKPOINTS", str(listed))
    app = run_app({"model": "class-model"})
    assert "class-model" in app.sidebar.selectbox(key="model_choice").options
    assert app.query_params["model"] == "class-model"


def test_in_public_mode_no_message_shows_a_server_path(monkeypatch, tmp_path: Path) -> None:
    """A listed checkpoint whose atlas is broken and whose config records where its data were:
    every sentence the page shows names the model, never a folder of the server."""
    broken = tmp_path / "secret-place" / "broken-model"
    shutil.copytree(ROOT / "checkpoints" / "mnist-z8", broken)
    (broken / "atlas.safetensors").write_bytes(b"not safetensors")
    config = json.loads((broken / "config.json").read_text())
    config["dataset"]["path"] = str(tmp_path / "secret-place" / "data")
    (broken / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("LATENT_EXPLORER_PUBLIC", "1")
    monkeypatch.setenv("LATENT_EXPLORER_CHECKPOINTS", str(broken))
    monkeypatch.setenv("LATENT_EXPLORER_DATA", str(tmp_path / "secret-place" / "nothing"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "secret-place" / "cache"))
    app = run_app({"model": "broken-model", "view": "training"})
    shown = [e.value for kind in ("warning", "error", "info", "caption", "markdown", "code") for e in app.get(kind)]
    shown += [e.value for e in app.sidebar.get("warning")] + [e.value for e in app.sidebar.get("error")]
    assert any("broken-model/atlas.safetensors is not a valid safetensors file" in text for text in shown)
    assert not [text for text in shown if str(tmp_path) in text or "secret-place" in text]


def test_the_emoji_map_is_coloured_by_category_and_names_each_emoji() -> None:
    app = run_app({"model": "emoji-rgb-z8"})
    payload = map_payload(app)
    assert payload["classes"] == [
        "Activities",
        "Animals & Nature",
        "Flags",
        "Food & Drink",
        "Objects",
        "People & Body",
        "Smileys & Emotion",
        "Symbols",
        "Travel & Places",
    ]
    assert len(set(payload["colours"])) == 9
    header, sections = served_bundle(payload["points_id"])
    names, labels = json.loads(sections["names"]), np.frombuffer(sections["labels"], "<i4")
    assert len(names) == 378 == len(labels)
    people = [name for name, label in zip(names, labels) if label == payload["classes"].index("People & Body")]
    # every variant of an emoji is on one side of the split: those in the test set come with all theirs
    counts = {}
    assert any(name.endswith(", dark skin tone") for name in people)  # a variant, by its short name and tone
    assert not any("~" in name for name in people)
    for name in people:
        counts[name.split(", ")[0]] = counts.get(name.split(", ")[0], 0) + 1
    assert set(counts.values()) <= {1, 2, 6, 26}  # an emoji alone, with 1 or 5 tones, or a 25-tone pair


def test_the_launcher_imports_what_app_py_imports_before_the_server_answers() -> None:
    import serve  # noqa: PLC0415 - the launcher `make app` runs

    source = "from __future__ import annotations\nimport os, numpy as np\nfrom . import near\nfrom training import x"
    assert serve.imported_modules(source) == ["os", "numpy", "training"]
    assert {"training", "streamlit", "explorer.figures"} <= set(serve.page_modules())  # plotly, through it
