"""A checkpoint is a folder that describes itself:

    model.safetensors   the network's weights
    config.json         {"format", "model": ModelConfig, "train": TrainConfig, "dataset", "versions"}
    metrics.json        test-set figures (see training.evaluate)
    history.jsonl       one JSON object a line per evaluation during training: step, epoch,
                        learning rate, mean training loss since the previous line, test figures
    state.safetensors   optimizer moments and RNG states, for --resume (optional)
    state.json          step, epoch, optimizer hyper-parameters, for --resume (optional)

A sharpened checkpoint (python -m training sharpen) is one too, with its parent's encoder and
a decoder fine-tuned adversarially; its config.json has a "sharpen" section (the parent's name,
the recipe, ENCODER_SHA256 of the encoder's weights, checked on every load), and it holds
    parent_decoder.safetensors   the parent's decoder: the calibrated likelihood that anomaly
                                 scores use (load_likelihood_model)

Only safetensors and JSON are ever read: nothing in a checkpoint can run code on load.
Every file is written to a temporary name, fsync'ed and renamed, so a crash mid-save leaves
the previous checkpoint whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from training.model import ConvVAE, ModelConfig

FORMAT = "latent-explorer/conv-vae/1"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
METRICS = "metrics.json"
STATE = "state.safetensors"
STATE_JSON = "state.json"
HISTORY = "history.jsonl"
PARENT_DECODER = "parent_decoder.safetensors"
ENCODER_PREFIXES = ("encoder.", "to_mu.", "to_logvar.")  # the weights a sharpened checkpoint shares


class CheckpointError(Exception):
    """A checkpoint cannot be loaded safely; the message is one sentence saying why."""


# --------------------------------------------------------------------------- atomic writes


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; checkpoints are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def atomic_save_tensors(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def versions() -> dict[str, str]:
    import numpy
    import safetensors

    return {"torch": torch.__version__, "numpy": numpy.__version__, "safetensors": safetensors.__version__}


def encoder_sha256(state: dict[str, Tensor]) -> str:
    """SHA-256 of a model's encoder weights (ENCODER_PREFIXES), names and float32 bytes in
    name order: what a sharpened checkpoint's latent space rests on."""
    digest = hashlib.sha256()
    for name in sorted(k for k in state if k.startswith(ENCODER_PREFIXES)):
        digest.update(name.encode())
        digest.update(state[name].detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------- save


def save_model(folder: str | os.PathLike, model: ConvVAE, config: dict[str, Any]) -> None:
    """Write weights then config.json. config: JSON-able dict with at least "model"."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_save_tensors(folder / WEIGHTS, dict(model.state_dict()), metadata={"format": FORMAT})
    atomic_write_json(folder / CONFIG, {"format": FORMAT, **config})


# --------------------------------------------------------------------------- load


def read_json(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointError(
            f"{path.name} is missing from {path.parent}; this is not a latent-explorer checkpoint."
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} cannot be read ({e}).") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}).") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object.")
    return data


def read_config(folder: str | os.PathLike) -> dict:
    """config.json of a checkpoint folder, checked for format and a valid model config."""
    folder = Path(folder)
    if folder.is_file():  # model.safetensors or config.json named instead of their folder
        hint = f"; pass its folder, {folder.parent}" if (folder.parent / CONFIG).is_file() else ""
        raise CheckpointError(f"{folder} is a file, not a checkpoint folder{hint}.")
    if not folder.is_dir():
        raise CheckpointError(f"Checkpoint folder {folder} does not exist.")
    config = read_json(folder / CONFIG)
    if config.get("format") != FORMAT:
        raise CheckpointError(
            f"{folder / CONFIG} has format {config.get('format')!r}, expected {FORMAT!r}: "
            "it is from another model or tool."
        )
    try:
        ModelConfig.from_dict(dict(config["model"]))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{folder / CONFIG} has an invalid model config ({e}).") from e
    return config


def read_tensors(path: Path) -> dict[str, Tensor]:
    """Tensors of a safetensors file, with a one-sentence CheckpointError for anything else
    (a pickle, a truncated file, random bytes)."""
    if not path.is_file():
        raise CheckpointError(f"{path.name} is missing from {path.parent}.")
    with open(path, "rb") as f:
        head = f.read(9)
    # safetensors: an 8-byte header length, then the JSON header; a pickle starts with its
    # protocol's 0x80 and a torch.save zip with PK, which a header length can begin with too
    if head[8:9] != b"{" and (head[:1] == b"\x80" or head[:2] == b"PK"):
        raise CheckpointError(
            f"{path} is a pickle or zip archive (a torch.save file), not safetensors; it was not "
            "opened because loading a pickle can run code."
        )
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} is not a valid safetensors file ({str(e).splitlines()[0]}).") from e


def load_model(folder: str | os.PathLike, device: str | torch.device = "cpu") -> ConvVAE:
    """Rebuild a ConvVAE from a checkpoint folder, in eval mode on DEVICE.

    Raises CheckpointError (one sentence) for a missing folder, a missing or invalid
    config.json, weights that are not safetensors, truncated, of the wrong shapes, or not
    finite."""
    folder = Path(folder)
    config = read_config(folder)
    model_config = ModelConfig.from_dict(dict(config["model"]))
    tensors = read_tensors(folder / WEIGHTS)
    model = ConvVAE(model_config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{folder / WEIGHTS} does not match config.json: missing {missing[:3]}, unexpected {unexpected[:3]}."
        )
    for name, value in tensors.items():
        if value.shape != expected[name].shape:
            raise CheckpointError(
                f"{folder / WEIGHTS}: {name} has shape {tuple(value.shape)} but config.json "
                f"(latent_dim={model_config.latent_dim}) needs {tuple(expected[name].shape)}."
            )
        if not value.is_floating_point():
            raise CheckpointError(f"{folder / WEIGHTS}: {name} holds {value.dtype}, expected floats.")
        if not torch.isfinite(value).all():
            raise CheckpointError(f"{folder / WEIGHTS}: {name} holds NaN or infinite values.")
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    sharpened = config.get("sharpen")
    if sharpened is not None and encoder_sha256(model.state_dict()) != sharpened.get("encoder_sha256"):
        raise CheckpointError(
            f"{folder / WEIGHTS}: its encoder no longer matches the one it was sharpened with (config.json's "
            f"encoder_sha256), so its latents would not mean its parent's; sharpen {sharpened.get('parent')} again."
        )
    model.checkpoint_config = config  # what it was trained on, for the app and evaluate
    return model.to(device).eval()


def load_likelihood_model(folder: str | os.PathLike, device: str | torch.device = "cpu") -> ConvVAE:
    """The model whose decoder is a calibrated likelihood, for anomaly scores: the checkpoint's
    own, or for a sharpened one, its encoder with the parent's decoder (an adversarial decoder's
    −ELBO is no longer a bound a score can rest on). Marked by likelihood_decoder: None for
    the model's own, else the parent's name."""
    model = load_model(folder, device)
    model.likelihood_decoder = None
    sharpened = model.checkpoint_config.get("sharpen")
    if sharpened is None:
        return model
    path = Path(folder) / PARENT_DECODER
    tensors = read_tensors(path)
    decoder = {k.removeprefix("decoder."): v.float() for k, v in tensors.items() if k.startswith("decoder.")}
    if not all(torch.isfinite(v).all() for v in decoder.values()):
        raise CheckpointError(f"{path} holds NaN or infinite values.")
    encoder = {k: v for k, v in model.state_dict().items() if k.startswith(ENCODER_PREFIXES)}
    try:
        # the parent's decoder may be another network than the sharpened one: parent_model says which
        parent = ConvVAE(ModelConfig.from_dict(dict(sharpened.get("parent_model", model.config.to_dict()))))
        parent.load_state_dict(encoder, strict=False)
        parent.decoder.load_state_dict(decoder)
    except (RuntimeError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path} does not match the model ({str(e).splitlines()[0]}).") from e
    if encoder_sha256(parent.state_dict()) != sharpened.get("encoder_sha256"):
        raise CheckpointError(f"{folder / CONFIG}: its parent_model does not take the checkpoint's encoder.")
    parent.checkpoint_config = model.checkpoint_config
    model = parent
    model.likelihood_decoder = str(sharpened.get("parent"))
    return model.to(device).eval()


def read_history(folder: str | os.PathLike) -> list[dict]:
    """The rows of a checkpoint's history.jsonl, in order; [] when it has none (trained before
    histories were kept). Raises CheckpointError for a line that is not a JSON object."""
    path = Path(folder) / HISTORY
    if not path.is_file():
        return []
    rows = []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} cannot be read ({e}).") from None
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            raise CheckpointError(f"{path}: line {number} is not a history row (a JSON object with a step).")
        rows.append(row)
    return rows


def write_history(folder: Path, rows: list[dict]) -> None:
    """ROWS as history.jsonl, whole and atomically, like every other file of a checkpoint."""
    atomic_write_bytes(folder / HISTORY, "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows).encode())


def read_metrics(folder: str | os.PathLike) -> dict:
    path = Path(folder) / METRICS
    if not path.is_file():
        return {}
    return read_json(path)
