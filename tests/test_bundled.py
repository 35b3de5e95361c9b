"""The bundled model keeps its quality on the real MNIST test set (where ../shared/data/mnist
exists, as in CI), and its committed metrics and atlas are its own."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import training
from explorer.models import sharpened_pair
from tests.conftest import BUNDLED
from training.checkpoint import ENCODER_PREFIXES
from training.data import load_dataset
from training.evaluate import elbo_metrics, encode_dataset, knn_accuracy

# What the bundled model must reach on the MNIST test set (its metrics.json has its own figures);
# the printed digits it also learns cost MNIST a little reconstruction error.
MSE_CEILING = 0.0125
KNN_FLOOR = 0.96


@pytest.fixture(scope="module")
def mnist(request: pytest.FixtureRequest) -> tuple:
    from tests.conftest import real_mnist_dir

    folder = real_mnist_dir()
    if folder is None:
        pytest.skip("real MNIST is not beside the project (../shared/data/mnist)")
    return load_dataset("mnist", folder, download=False)


@pytest.fixture(scope="module")
def model() -> training.ConvVAE:
    return training.load_model(BUNDLED)


def test_bundled_checkpoint_describes_itself(model: training.ConvVAE) -> None:
    config = json.loads((BUNDLED / "config.json").read_text())
    assert config["model"]["latent_dim"] == model.config.latent_dim == 8
    assert config["dataset"]["name"] == "mnist"
    metrics = json.loads((BUNDLED / "metrics.json").read_text())
    assert metrics["final"] is True and metrics["iw_samples"] >= 100
    assert not (BUNDLED / "model.pt").exists()


def test_the_bundled_history_shows_the_decay_phase() -> None:
    # (tests/test_history.py holds every bundled history to its model's metrics) the learning
    # rate decays over the last 30% of the steps, and the test MSE falls from epoch 63 to the end
    rows = training.read_history(BUNDLED)
    assert rows[62]["test_mse_per_pixel"] - rows[-1]["test_mse_per_pixel"] > 0.001
    assert rows[62]["lr"] == pytest.approx(0.002) and rows[-1]["lr"] < 1e-9


def test_reconstruction_and_knn_accuracy(model: training.ConvVAE, mnist: tuple) -> None:
    train, test = mnist
    metrics = elbo_metrics(model, test.images, model.checkpoint_config["train"]["loss"])
    assert metrics["mse_per_pixel"] <= MSE_CEILING
    train_mu, _ = encode_dataset(model, train.images)
    test_mu, _ = encode_dataset(model, test.images)
    knn = knn_accuracy(train_mu, train.labels, test_mu, test.labels, k=5)
    assert knn >= KNN_FLOOR
    committed = json.loads((BUNDLED / "metrics.json").read_text())
    assert committed["mse_per_pixel"] == pytest.approx(metrics["mse_per_pixel"], rel=1e-3)
    assert committed["knn5_accuracy"] == pytest.approx(knn, abs=2e-3)


def test_prior_samples_cover_all_ten_digits(model: training.ConvVAE, mnist: tuple) -> None:
    """1,000 samples from N(0, I), each labelled by its nearest training image (in pixels):
    every digit shows up, none is rare, and samples are close to some real digit."""
    train, _ = mnist
    reference = train.images[:20_000].flatten(1)
    labels = train.labels[:20_000]
    with torch.no_grad():
        samples = model.decode(torch.randn(1000, 8, generator=torch.Generator().manual_seed(0))).flatten(1)
    distances = torch.cdist(samples, reference)
    nearest = distances.argmin(dim=1)
    counts = np.bincount(labels[nearest].numpy(), minlength=10)
    assert (counts >= 30).all(), counts  # each class at least 3% of samples
    # per-pixel RMS distance to the nearest real digit, compared with real test digits' own
    sample_rms = (distances.min(dim=1).values / 28).median()
    assert sample_rms < 0.2  # real test digits: 0.169; blank or noise images: far above


def test_atlas_is_this_models_encoding_of_the_test_set(model: training.ConvVAE, mnist: tuple) -> None:
    from explorer.atlas import load_atlas

    _, test = mnist
    atlas = load_atlas(BUNDLED, 8)
    assert atlas is not None and len(atlas) == 10_000
    mu, _ = encode_dataset(model, test.images)
    np.testing.assert_allclose(atlas.means, mu.numpy(), atol=1e-4)
    np.testing.assert_array_equal(atlas.labels, test.labels.numpy())


@pytest.mark.parametrize("parent", ["mnist-z8", "fashion-z8", "emoji-rgb-z8", "mnist-cvae-z8"])
def test_the_bundled_sharpened_decoders_share_their_parents_latent_space(parent: str) -> None:
    folder = BUNDLED.parent / parent
    sharp = BUNDLED.parent / f"{parent}-sharp"
    ours, theirs = load_file(str(sharp / "model.safetensors")), load_file(str(folder / "model.safetensors"))
    encoder = [k for k in theirs if k.startswith(ENCODER_PREFIXES)]
    assert encoder and all(torch.equal(ours[k], theirs[k]) for k in encoder)
    for name in ("atlas.safetensors", "sampler.safetensors"):  # valid with the encoder, carried over
        assert (sharp / name).read_bytes() == (folder / name).read_bytes()
    model = training.load_model(sharp)
    assert model.checkpoint_config["sharpen"]["parent"] == parent
    metrics = json.loads((sharp / "metrics.json").read_text())
    # sharp and still faithful: the reconstructions' error within 10% of the VAE's
    assert metrics["mse_per_pixel"] <= 1.1 * metrics["parent_mse_per_pixel"]
    assert sharpened_pair(sharp, model.checkpoint_config) == (folder, sharp)
