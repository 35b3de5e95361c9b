"""Shared fixtures and helpers: tiny synthetic IDX data sets, the real MNIST folder when
present, the tiny model the CLI tests train, a reader of the browser bundle, and the browser
tests' server, chromium and page (one server per test module)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from explorer.live import BUNDLE_MAGIC
from tests.browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    LIVE_READY_JS,
    MAP_READY_JS,
    free_port,
    open_context,
    start_server,
)
from training.data import write_idx
from training.model import ModelConfig

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "checkpoints" / "mnist-z8"
TINY_MODEL = ModelConfig(conv_channels=(4, 8, 8), hidden_dim=16)
TINY_FLAGS = ["--conv-channels", "4,8,8", "--hidden-dim", "16", "--quiet"]
# One thread: the tiny test models gain nothing from more, and it keeps the tests quick
# when something else is using the other core.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def read_bundle(data: bytes) -> tuple[dict, dict[str, bytes]]:
    """The inverse of explorer.live.browser_bundle, as the browser reads it: (header, sections)."""
    assert data[:4] == BUNDLE_MAGIC
    (header_length,) = struct.unpack("<I", data[4:8])
    header = json.loads(data[8 : 8 + header_length])
    body = data[8 + header_length :]
    sections = {name: body[s["offset"] : s["offset"] + s["length"]] for name, s in header["sections"].items()}
    for s in header["sections"].values():
        assert s["offset"] % 4 == 0  # float32 views need it
    return header, sections


def real_mnist_dir() -> Path | None:
    """../shared/data/mnist beside the project (present in CI), or $LATENT_EXPLORER_DATA."""
    for candidate in (os.environ.get("LATENT_EXPLORER_DATA"), ROOT.parent / "shared" / "data" / "mnist"):
        if candidate and (Path(candidate) / "t10k-images-idx3-ubyte.gz").is_file():
            return Path(candidate)
    return None


def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 28, 28) uint8 images of a bright square whose position encodes the label 0..3,
    so a tiny VAE can learn them in a few steps."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=n).astype(np.uint8)
    images = np.zeros((n, 28, 28), np.uint8)
    for i, label in enumerate(labels):
        r, c = divmod(int(label), 2)
        images[i, 4 + 12 * r : 12 + 12 * r, 4 + 12 * c : 12 + 12 * c] = 255
    images = np.clip(images + rng.integers(0, 30, size=images.shape), 0, 255).astype(np.uint8)
    return images, labels


def write_tiny_mnist(folder: Path) -> Path:
    """FOLDER, created, with the four MNIST file names holding a tiny synthetic data set: 256
    training images (seed 1), 64 test images (seed 2)."""
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = synthetic_digits(256, seed=1)
    test_x, test_y = synthetic_digits(64, seed=2)
    write_idx(folder / "train-images-idx3-ubyte.gz", train_x)
    write_idx(folder / "train-labels-idx1-ubyte.gz", train_y)
    write_idx(folder / "t10k-images-idx3-ubyte", test_x)  # one raw file: both forms are read
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", test_y)
    return folder


def make_folder(root: Path, per_class: int = 12, size: tuple[int, int] = (48, 40)) -> Path:
    """Two classes of RGB images in subfolders: red-ish PNGs and blue-ish JPEGs."""
    rng = np.random.default_rng(0)
    for name, colour, suffix in (("reds", (220, 30, 30), ".png"), ("blues", (30, 30, 220), ".jpg")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + rng.integers(-20, 20, size=(size[1], size[0], 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i:03d}{suffix}")
    return root


@pytest.fixture
def tiny_mnist(tmp_path: Path) -> Path:
    return write_tiny_mnist(tmp_path / "data")


@pytest.fixture
def mnist_dir() -> Path:
    folder = real_mnist_dir()
    if folder is None:
        pytest.skip("real MNIST is not beside the project (../shared/data/mnist)")
    return folder


def run_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """python -m training ARGS, one thread, from the project's root."""
    return subprocess.run(
        [sys.executable, "-m", "training", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=ENV
    )


@pytest.fixture(scope="session")
def tiny_parent(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(checkpoint, data folder): a tiny VAE trained for two epochs on the tiny data set, with its
    sampler and atlas, ready to be sharpened."""
    root = tmp_path_factory.mktemp("sharpen")
    data = write_tiny_mnist(root / "data")
    folder = root / "checkpoints" / "tiny"
    for command in (
        ["train", "--out", str(folder), "--epochs", "2", "--batch-size", "32", *TINY_FLAGS],
        ["sampler", str(folder), "--components", "2"],
        ["atlas", str(folder), "--limit", "32"],
    ):
        result = run_cli(*command, "--data-dir", str(data))
        assert result.returncode == 0, result.stderr
    return folder, data


@pytest.fixture(scope="session")
def tiny_sharpened(tiny_parent: tuple[Path, Path]) -> Path:
    """tiny_parent's sharpened sibling, beside it: 12 steps of a tiny discriminator."""
    folder, data = tiny_parent
    out = folder.parent / "tiny-sharp"
    flags = ["--batch-size", "16", "--eval-every", "5", "--disc-width", "8", "--quiet", "--data-dir", str(data)]
    result = run_cli("sharpen", str(folder), "--out", str(out), "--steps", "12", *flags)
    assert result.returncode == 0, result.stderr
    return out


# --------------------------------------------------------------------------- browser tests


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A real `streamlit run app.py` on the bundled models, finding MNIST where the tests do
    (for the nearest training images)."""
    port = free_port()
    mnist = real_mnist_dir()
    process = start_server(port, env={**os.environ, "LATENT_EXPLORER_DATA": str(mnist)} if mnist else None)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def playwright() -> Iterator[object]:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only the browser tests need it

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: object) -> Iterator[object]:
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield b
    b.close()


@pytest.fixture
def page(browser: object, server: str) -> Iterator[object]:
    context = open_context(browser, 1400, 1200, accept_downloads=True)
    page = context.new_page()
    page.goto(server)
    page.wait_for_function(LIVE_READY_JS)  # the browser decoded its first image
    page.wait_for_function(MAP_READY_JS)
    yield page
    try:  # whatever a test did, the page never shows a traceback
        assert page.locator("[data-testid=stException]").count() == 0
    finally:
        context.close()
