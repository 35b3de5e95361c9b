"""python -m training sharpen: a decoder fine-tuned adversarially on a frozen encoder, on a tiny
model for a few steps on the CPU: the latent space kept bit for bit, resuming, the collapse
checks, the self-describing checkpoint and the scores that use the parent's decoder."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import training
import training.sharpen as sharpen_module
from tests.conftest import ENV, ROOT, TINY_FLAGS, run_cli, write_tiny_mnist
from training.augment import diff_augment
from training.checkpoint import ENCODER_PREFIXES, PARENT_DECODER, load_likelihood_model
from training.discriminator import Discriminator, r1_penalty
from training.sharpen import SharpenConfig, Sharpening, set_up, sharpen_step

# a small residual decoder, distilled for 4 steps, then sharpened: both phases in a few steps
SHARPEN_FLAGS = [
    "--batch-size",
    "16",
    "--eval-every",
    "5",
    "--disc-width",
    "8",
    "--decoder-channels",
    "16,8,8,4",
    "--adversarial-start",
    "4",
    "--quiet",
]


def cli(*args: str) -> subprocess.CompletedProcess:
    return run_cli(*args)


@pytest.fixture
def parent(tiny_parent: tuple[Path, Path]) -> tuple[Path, Path]:
    return tiny_parent


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_sharpening_keeps_the_encoder_bit_for_bit_and_describes_itself(parent: tuple, tmp_path: Path) -> None:
    folder, data = parent
    out = tmp_path / "sharp"
    result = cli("sharpen", str(folder), "--out", str(out), "--steps", "12", *SHARPEN_FLAGS, "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"saved {out}: test MSE ")
    mine, theirs = weights(out), weights(folder)
    encoder = [name for name in theirs if name.startswith(ENCODER_PREFIXES)]
    assert encoder and all(torch.equal(mine[name], theirs[name]) for name in encoder)
    # the decoder is a new network: the residual one, with the widths asked for
    assert "decoder.to_pixels.weight" in mine and "decoder.to_pixels.weight" not in theirs
    assert mine["decoder.stages.0.conv1.weight"].shape == (16, 16, 3, 3)
    # the folder says what it is, carries what stays valid, and loads like any checkpoint
    config = json.loads((out / "config.json").read_text())
    parent_model = json.loads((folder / "config.json").read_text())["model"]
    assert config["sharpen"]["parent"] == "tiny" and config["sharpen"]["recipe"]["steps"] == 12
    assert len(config["sharpen"]["encoder_sha256"]) == 64 and config["sharpen"]["parent_model"] == parent_model
    assert config["model"] == {**parent_model, "decoder": "residual", "decoder_channels": [16, 8, 8, 4]}
    for name in ("atlas.safetensors", "sampler.safetensors"):
        assert (out / name).read_bytes() == (folder / name).read_bytes()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final"] and metrics["step"] == 12 and metrics["parent_mse_per_pixel"] > 0
    assert [row["step"] for row in training.read_history(out)] == [5, 10, 12]
    model = training.load_model(out)
    x = torch.rand(3, 1, 28, 28)
    mu, _ = model.encode(x)
    assert torch.equal(mu, training.load_model(folder).encode(x)[0])  # the same z means the same thing
    # the calibrated likelihood is the parent's decoder
    likelihood = load_likelihood_model(out)
    assert likelihood.likelihood_decoder == "tiny"
    z = torch.randn(4, 8)
    assert torch.equal(likelihood.decode(z), training.load_model(folder).decode(z))
    assert not torch.equal(model.decode(z), likelihood.decode(z))
    # evaluate reports its figures, as for any checkpoint
    evaluated = cli("evaluate", str(out), "--data-dir", str(data), "--iw-samples", "2", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["mse_per_pixel"] == pytest.approx(metrics["mse_per_pixel"], rel=1e-4)


def test_a_resumed_sharpening_ends_where_an_uninterrupted_one_does(parent: tuple, tmp_path: Path) -> None:
    folder, data = parent
    flags = [*SHARPEN_FLAGS, "--data-dir", str(data)]
    straight = cli("sharpen", str(folder), "--out", str(tmp_path / "straight"), "--steps", "14", *flags)
    assert straight.returncode == 0, straight.stderr
    first = cli("sharpen", str(folder), "--out", str(tmp_path / "resumed"), "--steps", "7", *flags)
    assert first.returncode == 0, first.stderr
    again = cli("sharpen", str(folder), "--out", str(tmp_path / "resumed"), "--steps", "14", "--resume", *flags)
    assert again.returncode == 0, again.stderr
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    state_a, state_b = (
        load_file(tmp_path / "straight" / "state.safetensors"),
        load_file(tmp_path / "resumed" / "state.safetensors"),
    )
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a if k.startswith("disc."))
    # a resumed run keeps its recipe: another value is refused, not silently ignored
    refused = cli("sharpen", str(folder), "--out", str(tmp_path / "resumed"), "--resume", "--lr", "0.5", *flags)
    assert refused.returncode == 2 and "--lr 0.5 (saved: 0.0002)" in refused.stderr


def test_ctrl_c_mid_run_saves_a_resumable_state(parent: tuple, tmp_path: Path) -> None:
    folder, data = parent
    out = tmp_path / "interrupted"
    command = [sys.executable, "-m", "training", "sharpen", str(folder), "--out", str(out), "--steps", "100000"]
    process = subprocess.Popen(
        [*command, *SHARPEN_FLAGS, "--data-dir", str(data)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    deadline = time.monotonic() + 90
    while not (out / "state.json").exists():  # the first evaluation saved: the steps are under way
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "resume with --resume" in stderr and "Traceback" not in stderr
    assert json.loads((out / "state.json").read_text())["step"] >= 5
    training.load_model(out)


def test_a_collapse_is_detected_and_the_last_good_checkpoint_kept(parent: tuple, tmp_path: Path) -> None:
    folder, data = parent
    out = tmp_path / "collapsing"
    # a decoder learning rate this large throws its images away from their latents within steps
    result = cli(
        "sharpen",
        str(folder),
        "--out",
        str(out),
        "--steps",
        "40",
        "--lr",
        "0.5",
        *SHARPEN_FLAGS,
        "--data-dir",
        str(data),
    )
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert line.startswith("error: The sharpened decoder's") and "stopped at step" in line and "\n" not in line
    assert "lower --adversarial-weight" in line or "try a lower --lr" in line
    # whatever was saved before the collapse still loads, and says it is a sharpened decoder
    if (out / "model.safetensors").exists():
        assert "sharpen" in training.load_model(out).checkpoint_config


def test_a_tampered_encoder_is_refused(parent: tuple, tmp_path: Path) -> None:
    folder, data = parent
    out = tmp_path / "sharp"
    result = cli("sharpen", str(folder), "--out", str(out), "--steps", "5", *SHARPEN_FLAGS, "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    tensors = weights(out)
    tensors["to_mu.bias"] = tensors["to_mu.bias"] + 1e-3
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "latent-explorer/conv-vae/1"})
    with pytest.raises(training.CheckpointError, match="its encoder no longer matches the one it was sharpened with"):
        training.load_model(out)
    # and the parent's decoder must be the parent's: a missing file is named
    (out / PARENT_DECODER).unlink()
    tensors["to_mu.bias"] = tensors["to_mu.bias"] - 1e-3
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "latent-explorer/conv-vae/1"})
    with pytest.raises(training.CheckpointError, match="parent_decoder.safetensors is missing"):
        load_likelihood_model(out)


def test_sharpening_is_refused_without_a_sampler_or_onto_itself(parent: tuple, tmp_path: Path) -> None:
    folder, data = parent
    onto_itself = cli("sharpen", str(folder), "--out", str(folder), "--steps", "2", "--data-dir", str(data))
    assert onto_itself.returncode == 2 and "is the checkpoint being sharpened" in onto_itself.stderr
    bare = tmp_path / "bare"
    result = cli(
        "train", "--out", str(bare), "--epochs", "1", "--batch-size", "32", *TINY_FLAGS, "--data-dir", str(data)
    )
    assert result.returncode == 0, result.stderr
    no_sampler = cli("sharpen", str(bare), "--out", str(tmp_path / "x"), "--steps", "2", "--data-dir", str(data))
    assert no_sampler.returncode == 2 and f"python -m training sampler {bare}" in no_sampler.stderr


def test_bf16_sharpening_runs_its_steps_under_autocast_and_says_so(parent: tuple, tmp_path: Path) -> None:
    folder, data = parent
    flags = [*SHARPEN_FLAGS, "--data-dir", str(data), "--steps", "8"]
    runs = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        result = cli("sharpen", str(folder), "--out", str(out), "--precision", precision, *flags)
        assert result.returncode == 0, result.stderr
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["precision"] == precision and np.isfinite(metrics["mse_per_pixel"])
        assert json.loads((out / "config.json").read_text())["sharpen"]["recipe"]["precision"] == precision
        runs[precision] = weights(out)
    # the same seed, the same batches: only the arithmetic differs, a little
    decoder = [name for name in runs["fp32"] if name.startswith("decoder.")]
    differences = [float((runs["fp32"][k] - runs["bf16"][k]).abs().max()) for k in decoder]
    assert 0 < max(differences) < 0.1
    bad = cli("sharpen", str(folder), "--out", str(tmp_path / "x"), "--precision", "fp16", *flags)
    assert bad.returncode == 2 and "--precision" in bad.stderr and "fp16" in bad.stderr


def test_a_recipe_saved_before_the_precision_was_fp32() -> None:
    assert sharpen_module.recipe_from_saved({"steps": 10, "decoder": "residual"}).precision == "fp32"
    with pytest.raises(ValueError, match="precision must be one of auto, bf16, fp32, got 'half'"):
        SharpenConfig(precision="half")


def test_the_mirror_decoder_is_the_parents_own_fine_tuned(parent: tuple, tmp_path: Path) -> None:
    folder, data = parent
    out = tmp_path / "mirror"
    flags = ["--batch-size", "16", "--eval-every", "5", "--disc-width", "8", "--adversarial-start", "0", "--quiet"]
    result = cli(
        "sharpen",
        str(folder),
        "--out",
        str(out),
        "--steps",
        "6",
        "--decoder",
        "mirror",
        *flags,
        "--data-dir",
        str(data),
    )
    assert result.returncode == 0, result.stderr
    mine, theirs = weights(out), weights(folder)
    assert mine.keys() == theirs.keys()
    assert any(not torch.equal(mine[name], theirs[name]) for name in theirs if name.startswith("decoder."))
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == config["sharpen"]["parent_model"]


def in_process_run(parent: tuple, tmp_path: Path, **recipe: object) -> Sharpening:
    """A sharpening run set up in this process, in its adversarial phase from the first step."""
    folder, data = parent
    config = SharpenConfig(batch_size=16, disc_width=8, decoder_channels=(16, 8, 8, 4), adversarial_start=0, **recipe)
    return set_up(folder, config, tmp_path / "run", data, False, False, torch.device("cpu"))


def test_the_discriminator_judges_real_and_decoded_images_through_the_same_augmentation(
    parent: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = in_process_run(parent, tmp_path, augment_target=0.0, feature_weight=1.0)  # every image augmented
    augmented: list[tuple[torch.Tensor, torch.Tensor]] = []  # (input, output) of each augmentation

    def augment_spy(x: torch.Tensor, policy: tuple[str, ...], generator: torch.Generator, p: float) -> torch.Tensor:
        assert policy == ("color", "translation", "cutout") and p == 1.0
        out = diff_augment(x, policy, generator, p)
        augmented.append((x, out))
        return out

    judged: list[torch.Tensor] = []
    forward = Discriminator.forward
    monkeypatch.setattr(sharpen_module, "diff_augment", augment_spy)
    monkeypatch.setattr(Discriminator, "forward", lambda self, x, y=None: judged.append(x) or forward(self, x, y))
    rows = torch.arange(16)
    sharpen_step(run, rows)  # step 0: with the R1 penalty too
    x = run.data["x_train"][rows]
    outputs = [out for _, out in augmented]
    plain = [image for image in judged if not any(image is out for out in outputs)]
    # augmented: the decoder's two adversarial terms, the discriminator's three, R1's real images
    assert len(judged) == 8 and len(augmented) == 6
    # the only images judged as they are: the feature-matching pair, a decoded batch and its real one
    assert len(plain) == 2 and sum(torch.equal(image, x) for image in plain) == 1
    inputs = [source.detach() for source, _ in augmented]
    assert sum(torch.equal(source, x) for source in inputs) == 2  # the real images, in D's step and R1's
    assert all(source.shape == x.shape for source in inputs)
    # differentiable: the decoder's adversarial gradient flows back through the augmentation
    assert all(out.requires_grad for source, out in augmented if source.requires_grad)


def test_the_r1_penalty_is_the_gradient_norm_on_real_images(
    parent: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = in_process_run(parent, tmp_path, r1_every=2)
    calls: list[torch.Tensor] = []
    monkeypatch.setattr(
        sharpen_module,
        "r1_penalty",
        lambda disc, real, y, augment: calls.append(real) or r1_penalty(disc, real, y, augment),
    )
    for step in range(4):
        sharpen_step(run, torch.arange(16) + 16 * step)
        run.step += 1
    # every r1_every steps, on that step's real training images
    assert len(calls) == 2
    assert torch.equal(calls[0], run.data["x_train"][:16]) and torch.equal(calls[1], run.data["x_train"][32:48])
    # its value: the mean over images of |d mean-logit / dx|², here with no augmentation
    x = run.data["x_train"][:8].clone().requires_grad_(True)
    logits, _ = run.disc(x)
    (grad,) = torch.autograd.grad(logits.mean(dim=1).sum(), x)
    expected = grad.pow(2).flatten(1).sum(1).mean()
    assert float(r1_penalty(run.disc, run.data["x_train"][:8], None, lambda images: images).detach()) == pytest.approx(
        float(expected), rel=1e-5
    )


def test_the_local_head_learns_and_teaches_the_decoder(parent: tuple, tmp_path: Path) -> None:
    run = in_process_run(parent, tmp_path, local_share=0.5)
    assert run.disc.local_head is not None and run.disc.local_share == 0.5
    before = {k: v.clone() for k, v in run.disc.local_head.state_dict().items()}
    sharpen_step(run, torch.arange(16))
    # the discriminator's step moved the per-pixel head
    assert any(not torch.equal(before[k], v) for k, v in run.disc.local_head.state_dict().items())
    # and the decoder's adversarial term reads it: its gradient changes with the head's weights
    batch = sharpen_module.draw_batch(run, torch.arange(16))
    images = run.model.decode(batch.z, batch.y).detach().requires_grad_(True)

    def gradient() -> torch.Tensor:
        logits, _ = run.disc(images)
        (grad,) = torch.autograd.grad(sharpen_module.per_image(run.disc, logits).sum(), images)
        return grad

    with_head = gradient()
    with torch.no_grad():
        run.disc.local_head[-1].weight.zero_()
    assert not torch.allclose(with_head, gradient())
    saved = sharpen_module.recipe_from_saved({"steps": 10, "decoder": "residual"})
    assert saved.local_share == 0.0  # a recipe saved without the field had no such head


def test_a_conditional_model_is_sharpened_against_a_projection_discriminator(tmp_path: Path) -> None:
    data = write_tiny_mnist(tmp_path / "data")
    parent = tmp_path / "checkpoints" / "cvae"
    for command in (
        ["train", "--out", str(parent), "--epochs", "1", "--batch-size", "32", "--conditional", *TINY_FLAGS],
        ["sampler", str(parent), "--components", "2"],
        ["sharpen", str(parent), "--out", str(tmp_path / "checkpoints" / "cvae-sharp"), "--steps", "8", *SHARPEN_FLAGS],
    ):
        result = cli(*command, "--data-dir", str(data))
        assert result.returncode == 0, result.stderr
    sharp = training.load_model(tmp_path / "checkpoints" / "cvae-sharp")
    assert sharp.config.num_classes == 10 and sharp.config.decoder == "residual"
    state = load_file(tmp_path / "checkpoints" / "cvae-sharp" / "state.safetensors")
    assert state["disc.embed.weight"].shape == (10, 32)  # a class embedding: the projection term
    # the same z drawn as two classes differs: the decoder takes the class
    z = torch.zeros(1, 8)
    assert not torch.equal(sharp.decode(z, torch.tensor([1])), sharp.decode(z, torch.tensor([7])))


def test_a_prior_share_of_the_drawn_latents_comes_from_n01_from_its_step_on() -> None:
    from training.sampler import MixtureSampler  # noqa: PLC0415

    # two far modes, tight: a mixture draw sits within 0.3 of (±20, 0, 0, 0); a prior draw near 0
    means = np.array([[20.0, 0, 0, 0], [-20.0, 0, 0, 0]])
    sampler = MixtureSampler(np.array([0.5, 0.5]), means, np.stack([0.05 * np.eye(4)] * 2))
    plain = sharpen_module.drawn_latents(sampler, 48, torch.Generator().manual_seed(3))
    shared = sharpen_module.drawn_latents(sampler, 64, torch.Generator().manual_seed(3), prior_share=0.25)
    assert shared.shape == (64, 4)
    assert torch.equal(shared[:48], plain)  # the mixture's and the segments' draws are unchanged
    mixture_rows = plain[:24]
    assert (mixture_rows[:, 0].abs() - 20).abs().max() < 0.3
    prior = shared[48:]
    assert prior.abs().max() < 6 and (prior[:, 0].abs() < 5).all()  # none near a mode
    assert 0.5 < prior.std().item() < 1.5
    with pytest.raises(ValueError, match="prior_share"):
        SharpenConfig(prior_share=1.5)
    # from prior_start on only: the steps before draw what a run without a prior share draws
    config = SharpenConfig(prior_share=0.25, prior_start=9500)
    assert [sharpen_module.prior_share(config, s) for s in (0, 9499, 9500, 12999)] == [0.0, 0.0, 0.25, 0.25]
    with pytest.raises(ValueError, match="prior_start"):
        SharpenConfig(prior_start=-1)
