"""What every training loop here shares: its errors, the device, signals, the progress bar,
the clock, the history, saving and resuming.

`train.py` trains a VAE with these; a second loop (`sharpen.py`, a decoder) uses the same
pieces, so that Ctrl-C, a full disk, a diverging loss or a GPU out of memory read the same
everywhere:

    device = pick_device(name)
    check_writable(out, needed_bytes)
    saved = read_saved_run(out)              # --resume: weights, state, step, seconds, history
    with deferred_signals() as signals:      # SIGINT/SIGTERM become a flag checked between steps
        for _ in progress_bar(range(n), "epoch 1/30", enabled):
            ...                              # steps; LossWindow keeps the loss since the last row
        save_state(out, model, config, tensors, meta)   # weights + config, then the state, atomically
        record_history(out, history, row)    # a row per evaluation, history.jsonl rewritten whole
"""

from __future__ import annotations

import math
import re
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm import tqdm

from training.checkpoint import (
    STATE,
    STATE_JSON,
    WEIGHTS,
    CheckpointError,
    atomic_save_tensors,
    atomic_write_json,
    read_config,
    read_history,
    read_json,
    read_tensors,
    save_model,
    write_history,
)


class TrainingError(Exception):
    """Training cannot start or go on; the message is one sentence. EVERY_PROCESS: raised by
    all processes of a data-parallel run at once, from a verdict they share, so process 0
    alone need print it."""

    def __init__(self, message: str, every_process: bool = False) -> None:
        super().__init__(message)
        self.every_process = every_process


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM arrived; a resumable checkpoint was written."""

    def __init__(self, signum: int, step: int, folder: Path) -> None:
        super().__init__(f"Interrupted at step {step}; resume with --resume --out {folder}.")
        self.exit_code = 128 + signum


def pick_device(name: str) -> torch.device:
    """'auto', 'cpu' or 'cuda' as a device; 'cuda' without a GPU is a TrainingError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for but PyTorch sees no CUDA GPU; use --device cpu.")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    """'NVIDIA H200' or 'cpu (2 threads)', for metrics and benchmark reports."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"cpu ({threads} thread{'s' if threads > 1 else ''})"


PRECISIONS = ("auto", "bf16", "fp32")


def bf16_autocast(precision: str, device: torch.device) -> bool:
    """Whether to train under bf16 autocast. On a CPU only when it computes bf16 natively:
    elsewhere oneDNN emulates it, slower than fp32."""
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return True
    # private but stable since torch 1.12; a torch without it gets fp32
    native = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(native and native())


@contextmanager
def deferred_signals() -> Iterator[list[int]]:
    """Turn SIGINT/SIGTERM into a flag the loop checks between steps, so that a step is never
    cut in half; a second Ctrl-C falls through to the default behaviour."""
    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if received and signum == signal.SIGINT:
            raise KeyboardInterrupt
        received.append(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def check_writable(folder: Path, needed_bytes: int) -> None:
    """Fail before training, not after an hour, when --out cannot take a checkpoint."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise TrainingError(f"Cannot write to --out {folder} ({e.strerror or e}); choose another folder.") from e
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise TrainingError(
            f"--out {folder} has {free / 1e6:.1f} MB free but a checkpoint needs about "
            f"{needed_bytes / 1e6:.1f} MB; free some space or choose another folder."
        )


def check_fits_on_gpu(data_bytes: int, device: torch.device) -> None:
    """Refuse, before copying it, a data set larger than the GPU's free memory (it lives there
    whole, for the steps' batch gathers), rather than fail in the copy."""
    if device.type != "cuda":
        return
    free, total = torch.cuda.mem_get_info(device)
    if data_bytes > free:
        raise TrainingError(
            f"The data set takes {data_bytes / 1e9:.1f} GB as float32 and the GPU has {free / 1e9:.1f} of its "
            f"{total / 1e9:.1f} GB free; train on smaller or fewer images, or pass --device cpu."
        )


def kept(out: Path) -> str:
    """What a run stopped before saving leaves in OUT, for its message: a run stopped before
    its first checkpoint must not send the user looking for one."""
    if (out / WEIGHTS).is_file():
        return f"the last good checkpoint in {out} is intact"
    return f"so {out} holds no checkpoint yet"


def out_of_memory(error: torch.OutOfMemoryError, out: Path, batch_size: int) -> TrainingError:
    """The one sentence for a GPU that ran out of memory; torch's own is a paragraph about
    its allocator."""
    tried = re.search(r"Tried to allocate ([\d.]+ \w+)", str(error))
    return TrainingError(
        f"The GPU ran out of memory{f' (it needed {tried[1]} more)' if tried else ''}; stopped, {kept(out)} "
        f"(lower --batch-size than {batch_size}, train on smaller or fewer images, "
        f"free the GPU of other programs, or pass --device cpu)."
    )


def first_non_finite(losses: list[float], first_step: int, out: Path) -> TrainingError | None:
    """The error for the first non-finite value of LOSSES (the steps FIRST_STEP + 1, ...), or None."""
    bad = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
    if bad is None:
        return None
    return TrainingError(
        f"The loss became {losses[bad]} at step {first_step + bad + 1}; stopped without saving, {kept(out)} "
        "(try a lower --lr).",
        every_process=True,  # the losses were summed over the processes
    )


def epoch_permutation(seed: int, epoch: int, n: int) -> Tensor:
    """The order of the N training images in EPOCH: a pure function of the seed and the epoch,
    so a run resumed mid-epoch continues exactly."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


class LossWindow:
    """The mean per-image training loss over the steps since the last history row."""

    def __init__(self) -> None:
        self.total, self.steps = 0.0, 0

    def add(self, losses: list[float]) -> None:
        self.total += sum(losses)
        self.steps += len(losses)

    @property
    def mean(self) -> float | None:
        return self.total / self.steps if self.steps else None


def progress_bar(steps: range, description: str, enabled: bool) -> tqdm:
    """A progress bar over STEPS on stderr, kept when done; silent when not ENABLED."""
    return tqdm(
        steps, desc=description, unit="step", disable=not enabled, leave=True, dynamic_ncols=True, file=sys.stderr
    )


@dataclass
class Clock:
    """A run's training time in seconds: BEFORE a resume, and since STARTED."""

    before: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.started


def record_history(out: Path, history: list[dict], row: dict) -> None:
    """ROW added to HISTORY (add_history_row), and history.jsonl in OUT rewritten whole."""
    add_history_row(history, row)
    write_history(out, history)


def add_history_row(history: list[dict], row: dict) -> None:
    """ROW appended to HISTORY, or, when the last row is at the same step (a finished run
    resumed, which only evaluates again), in its place with the training facts of the steps
    that led there kept: this process ran none, and its optimizer's rate was never set."""
    if history and history[-1]["step"] == row["step"]:
        kept_keys = ("seconds", "lr", "train_loss_nats", "train_steps")
        history[-1] = {**row, **{key: history[-1][key] for key in kept_keys if key in history[-1]}}
    else:
        history.append(row)


def save_state(folder: Path, model: nn.Module, config: dict, tensors: dict[str, Tensor], meta: dict) -> None:
    """Weights and config, then the resumable state (TENSORS in state.safetensors, META in
    state.json); each file atomically, the state last, so a state always has its weights."""
    save_model(folder, model, config)
    atomic_save_tensors(folder / STATE, tensors)
    atomic_write_json(folder / STATE_JSON, meta)


@dataclass(frozen=True)
class SavedRun:
    """What --resume reads back from a run's folder: its weights, its state tensors and
    state.json (META), and the history rows up to the saved step (rows past it, from a save
    that stopped between its files, are not this run's past)."""

    weights: dict[str, Tensor]
    tensors: dict[str, Tensor]
    meta: dict
    history: list[dict]

    @property
    def step(self) -> int:
        return int(self.meta["step"])

    @property
    def clock(self) -> Clock:
        """The clock going on from the seconds the run had trained."""
        return Clock(before=float(self.meta.get("elapsed_s", 0.0)))


def read_saved_run(out: Path) -> SavedRun:
    """OUT's saved run, for --resume; CheckpointError when it has no state or a broken one."""
    weights, tensors, meta = read_state(out)
    step = int(meta["step"])
    return SavedRun(weights, tensors, meta, [row for row in read_history(out) if row["step"] <= step])


def read_state(out: Path) -> tuple[dict[str, Tensor], dict[str, Tensor], dict]:
    """A folder's weights, state tensors and state.json, for --resume; CheckpointError when it
    has no state or a broken one."""
    read_config(out)  # format and model config checked
    if not (out / STATE_JSON).is_file():
        raise CheckpointError(f"{out} has no {STATE_JSON}, so it cannot be resumed; train a new model instead.")
    return read_tensors(out / WEIGHTS), read_tensors(out / STATE), read_json(out / STATE_JSON)
