"""explorer/live.py: what the in-browser decoder receives from Python."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from onnx.reference import ReferenceEvaluator

from explorer.live import (
    browser_bundle,
    export_decoder_onnx,
    latent_from_browser,
    live_payload,
    points_bundle,
    principal_plane,
)
from explorer.map_index import kdbush_index, plot_positions
from tests.conftest import read_bundle
from training.model import ConvVAE, ModelConfig


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(),
        ModelConfig(latent_dim=4, channels=3, image_size=64, conv_channels=(8, 16, 16), hidden_dim=32),
        # the larger decoders of sharpened checkpoints: upsampling, residual blocks, odd sides
        ModelConfig(decoder="residual", decoder_channels=(32, 16, 8, 8)),
        ModelConfig(
            channels=3,
            image_size=64,
            conv_channels=(8, 16, 16, 16),
            decoder="residual",
            decoder_channels=(16, 8, 8, 4, 4),
        ),
    ],
)
def test_the_exported_decoder_computes_what_torch_does(config: ModelConfig) -> None:
    torch.manual_seed(0)
    model = ConvVAE(config).eval()
    with torch.no_grad():  # no layer left at its zero start, so that each one is checked
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    onnx_model = onnx.load_from_string(export_decoder_onnx(model))
    onnx.checker.check_model(onnx_model)
    graph = onnx_model.graph
    assert [i.name for i in graph.input] == ["z"] and [o.name for o in graph.output] == ["image"]
    z = np.random.default_rng(1).normal(size=(5, config.latent_dim)).astype(np.float32)
    (image,) = ReferenceEvaluator(onnx_model).run(None, {"z": z})  # any batch size
    with torch.no_grad():
        expected = model.decode(torch.from_numpy(z)).numpy()
    assert image.shape == (5, *config.image_shape)
    assert np.abs(image - expected).max() < 1e-5


def test_a_conditional_decoder_exports_with_its_label_input() -> None:
    torch.manual_seed(0)
    config = ModelConfig(conv_channels=(4, 8, 8), hidden_dim=16, num_classes=10)
    model = ConvVAE(config).eval()
    onnx_model = onnx.load_from_string(export_decoder_onnx(model))
    assert [i.name for i in onnx_model.graph.input] == ["z", "y"]
    z = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
    labels = np.array([0, 3, 3, 9])
    (image,) = ReferenceEvaluator(onnx_model).run(None, {"z": z, "y": np.eye(10, dtype=np.float32)[labels]})
    with torch.no_grad():
        expected = model.decode(torch.from_numpy(z), torch.from_numpy(labels)).numpy()
    assert np.abs(image - expected).max() < 1e-5


def test_the_bundles_carry_the_decoder_and_a_splits_points() -> None:
    bundle_id, data = browser_bundle(b"onnx!")
    header, sections = read_bundle(data)
    assert header["id"] == bundle_id and len(bundle_id) == 16 and sections == {"onnx": b"onnx!"}
    assert browser_bundle(b"onnx?")[0] != bundle_id  # the id follows the content
    means = np.arange(30, dtype=np.float32).reshape(10, 3)
    embedding = np.arange(20, dtype=np.float32).reshape(10, 2) / 7
    points_id, data = points_bundle(means, embedding, np.arange(10) % 3, np.arange(10) + 100, tuple("abcdefghij"))
    header, sections = read_bundle(data)
    assert header["id"] == points_id
    assert set(sections) == {"means", "embedding", "labels", "index", "names", "frame", "positions", "spatial_index"}
    assert np.array_equal(np.frombuffer(sections["means"], "<f4").reshape(header["sections"]["means"]["shape"]), means)
    assert np.array_equal(np.frombuffer(sections["embedding"], "<f4").reshape(10, 2), embedding)
    assert np.frombuffer(sections["labels"], "<i4").tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    assert np.frombuffer(sections["index"], "<i4").tolist() == list(range(100, 110))
    assert json.loads(sections["names"]) == list("abcdefghij")
    # the library's frame, coordinates and index: the training split's are drawn after the test split's
    frame = np.frombuffer(sections["frame"], "<f8")
    assert np.array_equal(np.frombuffer(sections["positions"], "<f4"), plot_positions(embedding, frame).ravel())
    train = embedding[:4] + 50
    _, data = points_bundle(means[:4], train, np.zeros(4), np.arange(4), drawn_after=embedding)
    header, sections = read_bundle(data)
    assert np.array_equal(np.frombuffer(sections["frame"], "<f8"), frame)
    assert header["sections"]["spatial_index"]["shape"] == [14]
    assert sections["spatial_index"] == kdbush_index(plot_positions(np.concatenate([embedding, train]), frame))
    # 10,000 points of an 8-d model: 66 bytes each (10 of them the index), sent once per model
    _, data = points_bundle(np.zeros((10_000, 8)), np.zeros((10_000, 2)), np.zeros(10_000), np.arange(10_000))
    assert len(data) < 10_000 * 66 + 1_000


def test_the_principal_plane_spans_the_widest_directions() -> None:
    rng = np.random.default_rng(0)
    means = rng.normal(size=(2000, 8)) * np.array([5, 0.1, 2, 0.1, 0.1, 0.1, 0.1, 0.1]) + 1.0
    plane = principal_plane(means)
    assert abs(plane.u @ plane.u - 1) < 1e-9 and abs(plane.v @ plane.v - 1) < 1e-9 and abs(plane.u @ plane.v) < 1e-9
    assert abs(plane.u[0]) > 0.99 and abs(plane.v[2]) > 0.99  # the sd-5 axis, then the sd-2 axis
    assert plane.a_range[1] == pytest.approx(15, rel=0.05) and plane.b_range[1] == pytest.approx(6, rel=0.05)
    assert plane.coordinates(plane.origin) == (0.0, 0.0)
    assert plane.coordinates(plane.origin + 2 * plane.u) == pytest.approx((2.0, 0.0))
    again = principal_plane(means[::-1])  # same data, another order: same signs
    assert np.allclose(again.u, plane.u) and np.allclose(again.v, plane.v)
    with pytest.raises(ValueError):
        principal_plane(means[:2])


LOW, HIGH = np.full(3, -3.0, np.float32), np.full(3, 3.0, np.float32)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "1,2,3",
        [1, 2],
        [1, 2, 3, 4],
        [1, "2", 3],
        [1, True, 3],
        [1, float("nan"), 3],
        [1, float("inf"), 3],
        {"0": 1},
    ],
)
def test_the_browser_latent_is_refused_unless_well_formed(value: object) -> None:
    assert latent_from_browser(value, LOW, HIGH) is None


def test_the_browser_latent_is_clamped_and_rounded() -> None:
    z = latent_from_browser([0.123456, -99, 1e30], LOW, HIGH)
    assert z.dtype == np.float32 and z.tolist() == pytest.approx([0.12, -3.0, 3.0])


def test_the_payload_is_plain_json() -> None:
    payload = live_payload(
        "abc",
        (1, 28, 28),
        np.array([0.5, -1.25], np.float32),
        3,
        LOW[:2],
        HIGH[:2],
        None,
        "/app/static/ort/",
        "/bundles/",
        image_pixels=bytes([0, 128, 255]),
    )
    assert payload["latent"] == [0.5, -1.25] and payload["revision"] == 3 and payload["shape"] == [1, 28, 28]
    assert payload["bundle_url"] == "/bundles/"
    assert payload["image"] == "AID/"  # base64 of the 8-bit values
