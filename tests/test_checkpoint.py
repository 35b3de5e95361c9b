import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import training
from training.checkpoint import CONFIG, HISTORY, WEIGHTS, read_history, save_model, write_history
from training.model import ConvVAE, ModelConfig

SMALL = ModelConfig(conv_channels=(4, 8, 8), hidden_dim=16)


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    folder = tmp_path / "ckpt"
    save_model(folder, ConvVAE(SMALL), {"model": SMALL.to_dict()})
    return folder


def test_save_then_load_gives_equal_tensors(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ConvVAE(SMALL)
    save_model(tmp_path / "c", model, {"model": SMALL.to_dict(), "note": "hi"})
    loaded = training.load_model(tmp_path / "c", device="cpu")
    assert not loaded.training
    assert loaded.config == SMALL
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    assert loaded.checkpoint_config["note"] == "hi"
    assert json.loads((tmp_path / "c" / CONFIG).read_text())["model"]["conv_channels"] == [4, 8, 8]


class Boom:
    def __reduce__(self):  # a pickle that would run code if it were ever unpickled
        return (Path("/tmp/latent-explorer-pwned").touch, ())


def _expect_error(folder: Path, *fragments: str) -> None:
    with pytest.raises(training.CheckpointError) as info:
        training.load_model(folder)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert "\n" not in message


def test_pickle_posing_as_safetensors_is_refused_unopened(checkpoint: Path) -> None:
    marker = Path("/tmp/latent-explorer-pwned")
    marker.unlink(missing_ok=True)
    (checkpoint / WEIGHTS).write_bytes(pickle.dumps(Boom()))
    _expect_error(checkpoint, "pickle", "not opened")
    assert not marker.exists()


def test_torch_save_zip_is_refused(checkpoint: Path) -> None:
    torch.save({"x": torch.zeros(1)}, checkpoint / WEIGHTS)
    _expect_error(checkpoint, "pickle or zip archive")


def test_a_safetensors_header_whose_length_looks_like_a_pickle_still_loads(tmp_path: Path) -> None:
    # the header length's first byte is 0x80 (a pickle's first byte) for one length in 256, and
    # "PK" (a zip's) for another: such a file is safetensors all the same
    from safetensors.torch import save_file

    from training.checkpoint import read_tensors

    for first, paddings in ((b"\x80", range(600)), (b"PK", range(19_000, 19_600))):
        for padding in paddings:
            path = tmp_path / "weights.safetensors"
            save_file({"w": torch.ones(2)}, str(path), metadata={"pad": "x" * padding})
            if path.read_bytes()[: len(first)] == first:
                break
        else:
            raise AssertionError(f"no header length starting with {first!r}")
        assert torch.equal(read_tensors(path)["w"], torch.ones(2))


def test_only_model_pt_is_refused(checkpoint: Path) -> None:
    (checkpoint / WEIGHTS).unlink()
    torch.save(ConvVAE(SMALL).state_dict(), checkpoint / "model.pt")
    _expect_error(checkpoint, "model.safetensors is missing")


def test_truncated_weights(checkpoint: Path) -> None:
    data = (checkpoint / WEIGHTS).read_bytes()
    (checkpoint / WEIGHTS).write_bytes(data[: len(data) // 2])
    _expect_error(checkpoint, "not a valid safetensors file")


def test_weights_of_another_latent_size(checkpoint: Path) -> None:
    other = ModelConfig(latent_dim=2, conv_channels=(4, 8, 8), hidden_dim=16)
    save_file(ConvVAE(other).state_dict(), checkpoint / WEIGHTS)
    _expect_error(checkpoint, "has shape", "latent_dim=8")


def test_non_finite_weights(checkpoint: Path) -> None:
    state = ConvVAE(SMALL).state_dict()
    state["to_mu.bias"][0] = float("nan")
    save_file(state, checkpoint / WEIGHTS)
    _expect_error(checkpoint, "to_mu.bias holds NaN")


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"format": "diffusers"}', "from another model"),
        ('{"format": "latent-explorer/conv-vae/1", "model": {"latent_dim": -1}}', "invalid model config"),
        ('{"format": "latent-explorer/conv-vae/1", "model": {"colour": 1}}', "invalid model config"),
    ],
)
def test_invalid_config(checkpoint: Path, text: str, fragment: str) -> None:
    (checkpoint / CONFIG).write_text(text)
    _expect_error(checkpoint, fragment)


def test_missing_config_and_missing_folder(checkpoint: Path, tmp_path: Path) -> None:
    (checkpoint / CONFIG).unlink()
    _expect_error(checkpoint, "config.json is missing")
    _expect_error(tmp_path / "nope", "does not exist")


def test_a_file_named_instead_of_its_checkpoint_folder(checkpoint: Path, tmp_path: Path) -> None:
    # `evaluate checkpoints/mnist-z8/model.safetensors`: the message names the folder to pass
    _expect_error(
        checkpoint / "model.safetensors",
        f"{checkpoint / 'model.safetensors'} is a file, not a checkpoint folder; pass its folder, {checkpoint}.",
    )
    (tmp_path / "notes.txt").write_text("hi")
    _expect_error(tmp_path / "notes.txt", f"{tmp_path / 'notes.txt'} is a file, not a checkpoint folder.")


def test_no_unsafe_loads_in_the_code() -> None:
    root = Path(__file__).resolve().parent.parent
    for path in list((root / "training").glob("*.py")) + list((root / "explorer").glob("*.py")) + [root / "app.py"]:
        if not path.exists():
            continue
        text = path.read_text()
        assert "pickle.load" not in text, path
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, (path, line)


def test_a_crash_mid_save_leaves_the_previous_checkpoint_loadable(checkpoint: Path, monkeypatch) -> None:
    import training.checkpoint as checkpoint_module

    before = (checkpoint / WEIGHTS).read_bytes()

    def crash(src: str, dst: str) -> None:
        raise KeyboardInterrupt  # the process dies between writing the new file and the rename

    monkeypatch.setattr(checkpoint_module.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        save_model(checkpoint, ConvVAE(SMALL), {"model": SMALL.to_dict()})
    monkeypatch.undo()
    assert (checkpoint / WEIGHTS).read_bytes() == before
    training.load_model(checkpoint)
    assert not list(checkpoint.glob(".*.tmp"))  # the half-written file was removed


SAVE_FOREVER = """
import sys, torch
from training.checkpoint import save_model
from training.model import ConvVAE, ModelConfig
config = ModelConfig()
print("ready", flush=True)
for step in range(10_000):
    torch.manual_seed(step)
    save_model(sys.argv[1], ConvVAE(config), {"model": config.to_dict(), "step": step})
"""


def test_kill_9_during_saves_leaves_a_loadable_checkpoint(tmp_path: Path) -> None:
    """SIGKILL at arbitrary moments of a process that does nothing but save: whatever it was
    writing, the folder still loads (the weights are replaced by an atomic rename)."""
    import random
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "ckpt"
    save_model(folder, ConvVAE(ModelConfig()), {"model": ModelConfig().to_dict(), "step": -1})
    rng = random.Random(0)
    root = Path(__file__).resolve().parent.parent
    for _ in range(5):
        process = subprocess.Popen(
            [sys.executable, "-c", SAVE_FOREVER, str(folder)], cwd=root, stdout=subprocess.PIPE, text=True
        )
        assert process.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.6))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        model = training.load_model(folder)  # never a CheckpointError
        assert model.config == ModelConfig()


def test_history_round_trip_and_a_bad_line_named(checkpoint: Path) -> None:
    assert read_history(checkpoint) == []  # trained before histories were kept
    rows = [{"step": 8, "train_loss_nats": 120.5, "test_neg_elbo_nats": 130.25}, {"step": 16, "train_loss_nats": None}]
    write_history(checkpoint, rows)
    assert read_history(checkpoint) == rows
    assert (checkpoint / HISTORY).read_text().count("\n") == 2
    for bad in ('{"step": 8}\n{"step": 16', '{"step": 8}\n[1, 2]', '{"step": 8}\n{"epoch": 2.0}'):
        (checkpoint / HISTORY).write_text(bad)
        with pytest.raises(training.CheckpointError, match=r"history.jsonl: line 2 is not a history row"):
            read_history(checkpoint)
