"""Unit tests of explorer/: the math, the atlas, the images, the URL state."""

import io
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from PIL import Image
from safetensors.numpy import save_file

import training
from explorer.atlas import Atlas, AtlasError, describe_point, display_name, load_atlas, nearest_class, place_on_map
from explorer.latent import clamp, inactive_dimensions, interpolate, latent_ranges, lerp, sample_prior, slerp, traverse
from explorer.map_data import (
    class_colours,
    map_label,
    map_means,
    map_size,
    rows_from_browser,
    training_row_from_browser,
)
from explorer.models import list_checkpoints
from explorer.params import format_latent, parse_latent, parse_link
from explorer.render import decode_latents, gif_bytes, grid, png_bytes, strip, to_uint8, upscale
from training.checkpoint import save_model
from training.model import ConvVAE, ModelConfig

ROOT = Path(__file__).resolve().parent.parent


def test_lerp_and_slerp_end_points_and_norms() -> None:
    rng = np.random.default_rng(0)
    z0, z1 = sample_prior(rng, 8), sample_prior(rng, 8)
    for path in (lerp(z0, z1, np.linspace(0, 1, 7)), slerp(z0, z1, np.linspace(0, 1, 7))):
        assert path.shape == (7, 8) and path.dtype == np.float32
        np.testing.assert_allclose(path[0], z0, atol=1e-6)
        np.testing.assert_allclose(path[-1], z1, atol=1e-6)
    # slerp keeps the norm on the straight line between the endpoint norms; lerp cuts inside
    t = np.linspace(0, 1, 7)
    norms = np.linalg.norm(slerp(z0, z1, t), axis=1)
    np.testing.assert_allclose(norms, (1 - t) * np.linalg.norm(z0) + t * np.linalg.norm(z1), rtol=1e-5)
    assert np.linalg.norm(lerp(z0, z1, np.array([0.5]))[0]) < norms[3]


def test_slerp_degenerate_cases_fall_back_to_lerp() -> None:
    z = np.ones(8, np.float32)
    np.testing.assert_allclose(slerp(z, 2 * z, np.array([0.5]))[0], 1.5 * z, rtol=1e-6)
    np.testing.assert_allclose(slerp(np.zeros(8), z, np.array([0.5]))[0], 0.5 * z, rtol=1e-6)


def test_interpolate_checks_arguments() -> None:
    z = np.zeros(8, np.float32)
    assert interpolate(z, z + 1, 5, "lerp").shape == (5, 8)
    with pytest.raises(ValueError):
        interpolate(z, z, 1)
    with pytest.raises(ValueError):
        interpolate(z, z, 3, "cubic")


def test_traverse_sweeps_one_dimension_per_row() -> None:
    z = np.arange(4, dtype=np.float32)
    low, high = -np.ones(4, np.float32) * 2, np.ones(4, np.float32) * 2
    grid_latents = traverse(z, low, high, 5)
    assert grid_latents.shape == (4, 5, 4)
    for i in range(4):
        np.testing.assert_allclose(grid_latents[i, :, i], np.linspace(-2, 2, 5))
        others = np.delete(grid_latents[i], i, axis=1)
        np.testing.assert_array_equal(others, np.broadcast_to(np.delete(z, i), others.shape))


def test_latent_ranges_cover_three_standard_deviations() -> None:
    means = np.random.default_rng(1).normal(0.5, 2.0, size=(5000, 8)).astype(np.float32)
    low, high = latent_ranges(means, 8)
    np.testing.assert_allclose(low, 0.5 - 6.0, atol=0.25)
    np.testing.assert_allclose(high, 0.5 + 6.0, atol=0.25)
    low, high = latent_ranges(None, 3)
    np.testing.assert_array_equal(high, [3, 3, 3])
    np.testing.assert_array_equal(clamp(np.array([9, -9, 0]), low, high), [3, -3, 0])


def _atlas(n: int = 200, d: int = 8) -> Atlas:
    rng = np.random.default_rng(0)
    means = rng.normal(size=(n, d)).astype(np.float32)
    return Atlas(means=means, labels=rng.integers(0, 10, n), embedding=means[:, :2] * 3 + 1, index=np.arange(n))


def test_marker_is_exact_on_atlas_points_and_near_its_neighbours() -> None:
    atlas = _atlas()
    for row in (0, 17, 199):
        assert place_on_map(atlas, atlas.means[row]) == pytest.approx(tuple(atlas.embedding[row]))
    z = atlas.means[5] + 0.01
    x, y = place_on_map(atlas, z)
    assert np.hypot(x - atlas.embedding[5, 0], y - atlas.embedding[5, 1]) < 0.5


def test_the_nearest_class_is_the_vote_of_the_nearest_test_means() -> None:
    means = np.array([[0, 0], [0.1, 0], [0.2, 0], [5, 5], [5.1, 5], [5.2, 5], [5.3, 5]], np.float32)
    atlas = Atlas(means, np.array([3, 3, 7, 1, 1, 1, 2]), np.zeros((7, 2), np.float32), np.arange(7))
    assert nearest_class(atlas, np.array([0.05, 0.0])) == (3, 2)  # 3, 3, 7 and two far 1s
    assert nearest_class(atlas, np.array([5.0, 5.0])) == (1, 3)
    assert nearest_class(atlas, np.array([0.0, 0.0]), k=1) == (3, 1)


def test_a_point_is_described_by_its_test_image_and_class() -> None:
    atlas = Atlas(
        means=np.zeros((3, 2), np.float32),
        labels=np.array([9, 0, 12]),
        embedding=np.zeros((3, 2), np.float32),
        index=np.array([4, 70, 9000]),
    )
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    assert describe_point(atlas, 0, names) == "test image #4 (Ankle boot)"
    assert describe_point(atlas, 1, []) == "test image #70 (0)"  # a checkpoint without class names
    assert describe_point(atlas, 2, names) == "test image #9000 (12)"  # a label the names do not cover


def test_variant_names_read_as_their_skin_tones() -> None:
    assert display_name("wave") == "wave"
    assert display_name("wave~1F3FB") == "wave, light skin tone"
    assert display_name("couple_with_heart~1F3FF-1F3FC") == "couple_with_heart, dark and medium-light skin tones"
    assert display_name("cat~night") == "cat (night)"  # a variant that is no skin tone keeps its mark's text
    named = Atlas(
        means=np.zeros((1, 2), np.float32),
        labels=np.array([0]),
        embedding=np.zeros((1, 2), np.float32),
        index=np.array([7]),
        names=("+1~1F3FE",),
    )
    assert describe_point(named, 0, ["People & Body"]) == "test image #7, +1, medium-dark skin tone (People & Body)"


def test_atlas_round_trip_and_refusals(tmp_path: Path) -> None:
    atlas = _atlas()
    save_file(
        {
            "means": atlas.means,
            "logvars": atlas.means * 0,
            "labels": atlas.labels,
            "embedding": atlas.embedding,
            "index": atlas.index,
        },
        str(tmp_path / "atlas.safetensors"),
    )
    loaded = load_atlas(tmp_path, 8)
    assert len(loaded) == 200
    np.testing.assert_array_equal(loaded.embedding, atlas.embedding)
    with pytest.raises(AtlasError, match="latent size 4"):
        load_atlas(tmp_path, 4)
    # a training split whose map positions do not match its means is refused too
    arrays = {"means": atlas.means, "labels": atlas.labels, "embedding": atlas.embedding, "index": atlas.index}
    arrays |= {"train_means": np.zeros((3, 8), np.float32), "train_embedding": np.zeros((2, 2), np.float32)}
    save_file({**arrays, "train_labels": np.zeros(3, np.int64)}, str(tmp_path / "atlas.safetensors"))
    with pytest.raises(AtlasError, match="does not match"):
        load_atlas(tmp_path, 8)
    (tmp_path / "atlas.safetensors").write_bytes(b"\x80\x04junk")
    with pytest.raises(AtlasError, match="not a valid safetensors"):
        load_atlas(tmp_path, 8)
    assert load_atlas(tmp_path / "missing", 8) is None


def test_images_render_crisp_and_round_trip() -> None:
    images = np.zeros((2, 1, 3, 3), np.float32)
    images[0, 0, 1, 1] = 1.0
    images[1, 0] = 0.5
    u8 = to_uint8(images)
    assert u8.shape == (2, 3, 3, 1) and u8.dtype == np.uint8
    assert u8[0, 1, 1, 0] == 255 and u8[1, 0, 0, 0] == 128
    big = upscale(u8[0], 4)
    assert big.shape == (12, 12, 1) and set(np.unique(big)) == {0, 255}
    assert big[4:8, 4:8].min() == 255 and big[:4].max() == 0  # square pixels, no blur
    decoded = np.asarray(Image.open(io.BytesIO(png_bytes(big))))
    np.testing.assert_array_equal(decoded, big[..., 0])
    assert strip(u8, pad=1).shape == (3, 7, 1)
    assert grid(np.stack([u8, u8]), pad=1).shape == (7, 7, 1)


def test_gif_is_animated_and_loops() -> None:
    frames = np.stack([np.full((4, 4, 1), v, np.uint8) for v in (0, 100, 200)])
    data = gif_bytes(frames, scale=2, bounce=True)
    gif = Image.open(io.BytesIO(data))
    assert gif.format == "GIF" and gif.size == (8, 8)
    assert gif.n_frames == 4  # 0, 100, 200, 100: forward then back
    assert gif.info.get("loop") == 0


def test_decode_latents_gray_and_rgb() -> None:
    for config in (
        ModelConfig(conv_channels=(4, 8, 8), hidden_dim=16),
        ModelConfig(channels=3, image_size=64, conv_channels=(4, 8, 8), hidden_dim=16),
    ):
        model = ConvVAE(config).eval()
        images = decode_latents(model, np.zeros((3, 8), np.float32))
        assert images.shape == (3, config.image_size, config.image_size, config.channels)
        assert decode_latents(model, np.zeros(8, np.float32)).shape[0] == 1


def test_map_rows_name_test_points_first_then_the_training_split() -> None:
    atlas = _atlas()
    train_means = np.arange(24, dtype=np.float32).reshape(3, 8)
    everything = replace(
        atlas, train_means=train_means, train_embedding=np.zeros((3, 2), np.float32), train_labels=np.array([4, 5, 6])
    )
    assert map_size(atlas, True) == 200 and map_size(everything, False) == 200 and map_size(everything, True) == 203
    np.testing.assert_array_equal(map_means(everything, [5, 201]), np.stack([atlas.means[5], train_means[1]]))
    np.testing.assert_array_equal(map_means(atlas, [5, 6]), atlas.means[[5, 6]])
    assert [map_label(everything, r) for r in (7, 200, 202)] == [int(atlas.labels[7]), 4, 6]


def test_a_selection_from_the_browser_is_checked() -> None:
    assert rows_from_browser([3, 1, 3, 202, -1, True, 2.0, "4", 9], 203) == [3, 1, 202, 9]
    assert rows_from_browser([5, 203], 203) == [5]
    assert rows_from_browser({"rows": [1]}, 10) == [] and rows_from_browser(None, 10) == []


def test_a_hover_cards_request_for_a_training_image_is_checked() -> None:
    atlas = replace(_atlas(), train_means=np.zeros((5, 8), np.float32))
    assert training_row_from_browser({"row": 4, "ask": 1}, atlas) == 4
    for value in ({"row": 5}, {"row": -1}, {"row": True}, {"row": "2"}, [2], None):
        assert training_row_from_browser(value, atlas) is None
    assert training_row_from_browser({"row": 0}, _atlas()) is None  # an atlas without training means


def test_each_class_has_its_colour_and_they_repeat_past_ten() -> None:
    colours = class_colours(12)
    assert len(set(colours[:10])) == 10 and colours[10:] == colours[:2]


@pytest.mark.parametrize(
    "text,ok,warns",
    [
        ("0,1,2,-1,0.5,0,0,0", True, False),
        ("0.6,-0.4,0.1,0.2,-0.8,0.3,0,-0.5", True, False),  # not exact in float32, still in range
        ("0,1,2,-1,0.5,0,0,99", True, True),  # clamped
        ("1e308,0,0,0,0,0,0,0", True, True),
        ("nan,0,0,0,0,0,0,0", False, True),
        ("inf,0,0,0,0,0,0,0", False, True),
        ("0,0,0", False, True),  # wrong count
        ("zero,0,0,0,0,0,0,0", False, True),
        ("," * 5000, False, True),
        ("", False, True),
    ],
)
def test_latent_from_url_is_validated_and_clamped(text: str, ok: bool, warns: bool) -> None:
    low, high = -np.full(8, 3, np.float32), np.full(8, 3, np.float32)
    z, warnings = parse_latent(text, low, high)
    assert (z is not None) == ok
    assert bool(warnings) == warns
    if z is not None:
        assert z.shape == (8,) and np.all(z <= 3) and np.all(z >= -3)
        assert parse_latent(format_latent(z), low, high) == (pytest.approx(z, abs=1e-3), [])


def test_page_state_refuses_unknown_models_and_paths() -> None:
    state = parse_link({"model": "../../etc/passwd", "view": "<script>"}, ["mnist-z8"], "mnist-z8")
    assert state.model == "mnist-z8" and state.view == "interpolate"
    assert len(state.warnings) == 2
    state = parse_link({"model": "mnist-z8", "view": "traverse"}, ["mnist-z8"], "mnist-z8")
    assert (state.model, state.view, state.warnings) == ("mnist-z8", "traverse", [])


def test_list_checkpoints(tmp_path: Path) -> None:
    config = ModelConfig(conv_channels=(4, 8, 8), hidden_dim=16)
    for name in ("b-model", "a-model"):
        save_model(tmp_path / name, ConvVAE(config), {"model": config.to_dict()})
    (tmp_path / "not-a-checkpoint").mkdir()
    assert list_checkpoints(tmp_path) == ["a-model", "b-model"]
    assert list_checkpoints(tmp_path / "nope") == []


def test_uploads_are_scored_in_one_batch_as_one_by_one_and_ranked() -> None:
    import torch

    from explorer.anomaly import ranking, score_image, score_images

    torch.manual_seed(0)
    model = ConvVAE(ModelConfig(conv_channels=(4, 8, 8), hidden_dim=16)).eval()
    x = np.random.default_rng(0).random((4, 1, 28, 28)).astype(np.float32)
    together = score_images(model, x)
    for i, scored in enumerate(together):
        alone = score_image(model, x[i])
        assert scored.score == pytest.approx(alone.score, abs=1e-3)
        np.testing.assert_allclose(scored.mu, alone.mu, atol=1e-5)
        assert scored.reconstruction.shape == (28, 28, 1) and scored.reconstruction.dtype == np.uint8
    names = ["a.png", "b.png", "c.png", "d.png"]
    atlas = Atlas(
        means=np.zeros((4, 8), np.float32),
        labels=np.zeros(4, np.int64),
        embedding=np.zeros((4, 2), np.float32),
        index=np.arange(4),
        anomaly=np.array([s.score for s in together], np.float32),
    )
    rows = ranking(names, list(x), together, atlas)
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert [r["file"] for r in rows] == [names[i] for i in np.argsort([-s.score for s in together])]
    # against a "test set" of these same four scores: 75, 50, 25 and 0% score lower
    assert [r["above"] for r in rows] == [75.0, 50.0, 25.0, 0.0]
    assert all(r["above"] is None for r in ranking(names, list(x), together, None))
    assert all(r["image"].startswith("data:image/png;base64,") and r["label"] is None for r in rows)
    # as CSV: a header, then the rows in rank order (no "read_as" column for this unconditional model)
    import csv as csv_module

    from explorer.anomaly import ranking_csv

    table = list(csv_module.reader(io.StringIO(ranking_csv(rows))))
    assert table[0] == ["rank", "file", "score_nats", "test_set_below_percent"]
    assert [line[1] for line in table[1:]] == [r["file"] for r in rows]
    assert [float(line[3]) for line in table[1:]] == [75.0, 50.0, 25.0, 0.0]


def test_a_conditional_model_reads_each_upload_as_its_best_class() -> None:
    import torch

    import training
    from explorer.anomaly import score_images

    model = training.load_model(Path(__file__).resolve().parent.parent / "checkpoints" / "mnist-cvae-z8")
    with torch.inference_mode():  # one typical image of each digit, drawn by the model itself
        x = model.decode(torch.zeros(10, model.config.latent_dim), torch.arange(10)).numpy()
    scored = score_images(model, x)
    assert [s.label for s in scored] == list(range(10))
    # reconstructed as that class: close to the input (another class would draw another digit)
    for image, s in zip(x, scored):
        assert np.abs(s.reconstruction[..., 0] / 255.0 - image[0]).mean() < 0.05


def test_inactive_dimensions_are_those_whose_means_barely_vary() -> None:
    rng = np.random.default_rng(0)
    means = rng.standard_normal((1000, 4)).astype(np.float32)
    means[:, 2] *= 0.05  # variance 0.0025: under Burda et al.'s 0.01
    means[:, 3] = 0.5 + 0.12 * means[:, 3]  # variance 0.0144 around an offset: in use
    assert inactive_dimensions(means) == [2]
    assert inactive_dimensions(None) == [] and inactive_dimensions(means[:1]) == []


def test_the_bundled_fashion_model_leaves_z7_unused_and_its_decoder_ignores_it() -> None:
    # what the page reports for checkpoints/fashion-z8, checked against the decoder itself
    model = training.load_model(ROOT / "checkpoints" / "fashion-z8")
    atlas = load_atlas(ROOT / "checkpoints" / "fashion-z8", 8)
    assert inactive_dimensions(atlas.means) == [6]
    assert inactive_dimensions(load_atlas(ROOT / "checkpoints" / "mnist-z8", 8).means) == []
    change = []
    with torch.no_grad():
        for d in range(8):
            z = torch.zeros(2, 8)
            z[:, d] = torch.tensor([-3.0, 3.0])
            images = model.decode(z)
            change.append(float((images[0] - images[1]).abs().mean()))
    assert change[6] < 0.01 and min(change[:6] + change[7:]) > 0.1  # measured: 0.0018 against 0.12-0.48


def test_the_onnx_decoder_is_cached_by_its_weights_and_rewritten_weights_are_exported_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import explorer.live as live  # noqa: PLC0415 - its export is counted

    exports = []
    real_export = live.export_decoder_onnx
    monkeypatch.setattr(live, "export_decoder_onnx", lambda model: exports.append(1) or real_export(model))
    config = ModelConfig(conv_channels=(4, 8, 8), hidden_dim=16)
    torch.manual_seed(0)
    save_model(tmp_path / "ckpt", ConvVAE(config).eval(), {"model": config.to_dict()})
    model = training.load_model(tmp_path / "ckpt")
    first = live.cached_decoder_onnx(model, tmp_path / "cache")
    assert live.cached_decoder_onnx(training.load_model(tmp_path / "ckpt"), tmp_path / "cache") == first
    assert len(exports) == 1 and len(list((tmp_path / "cache").glob("*.onnx"))) == 1  # a new process: no export
    # the weights rewritten in place: another key, a new export with the new weights in it
    torch.manual_seed(1)
    save_model(tmp_path / "ckpt", ConvVAE(config).eval(), {"model": config.to_dict()})
    changed = training.load_model(tmp_path / "ckpt")
    second = live.cached_decoder_onnx(changed, tmp_path / "cache")
    assert len(exports) == 2 and second != first and second == real_export(changed)
    weights = changed.decoder.state_dict()
    first_weight = next(tensor for name, tensor in weights.items() if name.endswith("weight"))
    initialisers = onnx.load_from_string(second).graph.initializer
    assert any(np.array_equal(numpy_helper.to_array(i), first_weight.numpy()) for i in initialisers)
    # a cache that cannot be written is no error
    (tmp_path / "file").write_text("x")
    assert live.cached_decoder_onnx(changed, tmp_path / "file" / "cache") == second


def test_the_picker_adds_an_operators_folders_by_name_and_public_text_names_no_path(tmp_path: Path) -> None:
    from explorer.models import available_checkpoints, hide_paths, public_mode  # noqa: PLC0415

    root, extra = tmp_path / "bundled", tmp_path / "elsewhere" / "class-run"
    for folder in (root / "a", extra, tmp_path / "elsewhere" / "a"):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    listed = os.pathsep.join([str(extra), str(tmp_path / "elsewhere" / "a"), str(tmp_path / "empty"), ""])
    found = available_checkpoints(root, listed)
    assert found == {"a": root / "a", "class-run": extra}  # a taken name and a folder with no checkpoint left out
    assert [public_mode({"LATENT_EXPLORER_PUBLIC": v}) for v in ("1", "true", "On", "0", "", "no")] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]
    text = f"{extra}/atlas.safetensors is broken; {tmp_path}/secret/x.png too, see https://example.org/a/b, 3/4"
    assert hide_paths(text, found) == (
        "class-run/atlas.safetensors is broken; a folder on the server too, see https://example.org/a/b, 3/4"
    )
