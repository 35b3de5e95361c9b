"""explorer/preprocess.py: a user's image made into the model's input."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from explorer.preprocess import MAX_UPLOAD_BYTES, data_url_bytes, read_image_bytes
from training.data import DataError
from training.images import mnist_like, model_input


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def a_one_on_paper(width: int = 300, height: int = 400) -> Image.Image:
    """A photo-like upload: a dark, off-centre, tall stroke on light grey paper."""
    image = Image.new("L", (width, height), 220)
    ImageDraw.Draw(image).line([(60, 50), (80, 300)], fill=20, width=25)
    return image


def test_mnist_like_centres_the_ink_by_mass_in_a_20_pixel_box() -> None:
    gray = np.asarray(a_one_on_paper(), np.float32) / 255
    digit = mnist_like(gray)
    assert digit.shape == (28, 28) and digit.dtype == np.float32
    assert digit.max() == pytest.approx(1.0, abs=0.05) and digit[0].max() < 0.05  # white ink, black paper
    rows, cols = np.nonzero(digit > 0.1)
    assert rows.max() - rows.min() + 1 <= 21  # the tall side scaled to the 20-pixel box
    com = [(digit.sum(axis=a) * np.arange(28)).sum() / digit.sum() for a in (1, 0)]
    assert com == pytest.approx([14, 14], abs=1.0)
    assert mnist_like(np.full((50, 50), 0.8, np.float32)) is None  # blank paper: no ink


def test_white_on_black_drawings_are_kept_as_they_are() -> None:
    image = Image.new("L", (224, 224), 0)
    ImageDraw.Draw(image).ellipse((60, 40, 160, 190), outline=255, width=18)
    digit = mnist_like(np.asarray(image, np.float32) / 255)
    assert digit[14, 14] < 0.2 and digit.max() > 0.9  # a zero: ink around, hole in the middle


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # PIL's own, before our refusal
def test_uploads_are_checked_before_decoding() -> None:
    assert read_image_bytes(png(a_one_on_paper()), "one.png", 1).size == (300, 400)
    with pytest.raises(DataError, match="empty"):
        read_image_bytes(b"", "x.png", 1)
    with pytest.raises(DataError, match="MB limit"):
        read_image_bytes(bytes(MAX_UPLOAD_BYTES + 1), "big.png", 1)
    gif = io.BytesIO()
    Image.new("L", (10, 10)).save(gif, format="GIF")
    with pytest.raises(DataError, match="not a readable PNG or JPEG"):
        read_image_bytes(gif.getvalue(), "really-a-gif.png", 1)
    bomb = png(Image.new("1", (10_000, 10_000)))  # 100 megapixels in a few KB
    assert len(bomb) < 100_000
    with pytest.raises(DataError, match="megapixel"):
        read_image_bytes(bomb, "bomb.png", 1)


def test_model_input_for_digit_and_rgb_models() -> None:
    x = model_input(a_one_on_paper(), channels=1, size=28, digits=True)
    assert x.shape == (1, 28, 28)
    rgb = model_input(Image.new("RGB", (90, 60), (255, 0, 0)), channels=3, size=16, digits=False)
    assert rgb.shape == (3, 16, 16) and rgb[0].min() == 1.0 and rgb[1].max() == 0.0


def test_data_urls() -> None:
    data = png(Image.new("L", (4, 4)))
    assert data_url_bytes("data:image/png;base64," + base64.b64encode(data).decode()) == data
    for bad in (None, 3, "data:text/html;base64,AAAA", "data:image/png;base64,@@@"):
        with pytest.raises(DataError):
            data_url_bytes(bad)


def test_a_scored_image_ranks_against_the_atlas() -> None:
    import torch

    from explorer.anomaly import percentile_among_test_set, score_image
    from explorer.atlas import Atlas
    from training.model import ConvVAE, ModelConfig

    torch.manual_seed(0)
    model = ConvVAE(ModelConfig(conv_channels=(4, 8, 8), hidden_dim=16)).eval()
    x = model_input(a_one_on_paper(), channels=1, size=28, digits=True)
    scored = score_image(model, x)
    assert scored.mu.shape == (8,) and scored.reconstruction.shape == (28, 28, 1)
    assert scored.neg_elbo > 0 and np.isfinite(scored.score)
    atlas = Atlas(
        means=np.zeros((4, 8), np.float32),
        labels=np.zeros(4, np.int64),
        embedding=np.zeros((4, 2), np.float32),
        index=np.arange(4),
        anomaly=np.array([1.0, 2.0, 3.0, 4.0], np.float32),
    )
    assert percentile_among_test_set(atlas, 2.5) == 50.0
    assert percentile_among_test_set(None, 2.5) is None
