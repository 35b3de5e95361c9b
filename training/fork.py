"""Branches of a sharpening: a copy of a saved run, continued with another seed or another recipe
for its adversarial phase.

Sharpening runs vary from seed to seed as much as recipes differ (docs/model-notes.md), and
every run spends its first adversarial_start steps distilling the parent, the same for every
recipe of one seed. A fork starts from a run's saved state instead, so recipes are compared
from one distilled decoder, and a recipe's spread over seeds is measured from one start:

    python -m training sharpen checkpoints/mnist-z8 --out runs/trunk --steps 6000 --adversarial-start 6000
    python -m training sharpen checkpoints/mnist-z8 --fork runs/trunk --seed 2 --steps 10000 --out runs/seed-2
    python -m training sharpen checkpoints/mnist-z8 --fork runs/trunk --disc-lr 4e-4 --steps 10000 --out runs/dlr

A fork may change the seed (its data order and its generator, which draws the latents and the
augmentation, start afresh from it), the steps, the device, the evaluations' interval and what
acts only once the adversarial phase has begun (ADVERSARIAL_FIELDS); a fork with the run's own
recipe continues it exactly as --resume would. Its config.json records where it started,
sharpen["fork"]: {"from", "step", "seconds", "state_sha256", "recipe"} (the source's folder
name, its saved step and training seconds, the SHA-256 of its state file, its recipe) and,
for a fork of a fork, the source's own record as "fork".
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import torch

from training.atlas import ATLAS
from training.checkpoint import (
    CONFIG,
    HISTORY,
    PARENT_DECODER,
    STATE,
    STATE_JSON,
    WEIGHTS,
    atomic_save_tensors,
    atomic_write_json,
    read_config,
)
from training.loop import TrainingError, read_state
from training.sampler import SAMPLER

# the recipe's fields that act only from adversarial_start on: a fork of a distilled decoder
# may change them and stay a comparison from one start
ADVERSARIAL_FIELDS = (
    "lr",
    "disc_lr",
    "feature_weight",
    "adversarial_weight",
    "mse_budget",
    "mixture_weight",
    "prior_share",
    "prior_start",
    "augment",
    "augment_target",
    "r1_gamma",
    "r1_every",
    "ema",
)
FORKABLE = ("steps", "device", "seed", "eval_every", *ADVERSARIAL_FIELDS)
# the files a fork copies as they are; config.json and the state are written anew, the state last,
# and metrics.json by the fork's own first evaluation
COPIED = (WEIGHTS, PARENT_DECODER, ATLAS, SAMPLER, HISTORY)


def fork(source: str | Path, out: str | Path, recipe: dict) -> None:
    """OUT: SOURCE's saved sharpening run, to be resumed with RECIPE (a SharpenConfig as a dict,
    the saved one with FORKABLE fields changed); its generator started afresh from RECIPE's seed
    where that is another than SOURCE's. TrainingError when OUT already holds a run or is
    SOURCE; CheckpointError when SOURCE cannot be resumed."""
    source, out = Path(source), Path(out)
    if out.resolve() == source.resolve():
        raise TrainingError(f"--out {out} is the run being forked; choose another folder.")
    if (out / STATE_JSON).exists() or (out / WEIGHTS).exists():
        raise TrainingError(f"{out} already holds a run; continue it with --resume or choose another --out.")
    config = read_config(source)
    if "sharpen" not in config:
        raise TrainingError(f"{source} is not a sharpening run; --fork branches one (python -m training sharpen).")
    _, tensors, meta = read_state(source)
    sharpened = config["sharpen"]
    record = {
        "from": source.name,
        "step": int(meta["step"]),
        "seconds": float(meta.get("elapsed_s", 0.0)),
        "state_sha256": hashlib.sha256((source / STATE).read_bytes()).hexdigest(),
        "recipe": sharpened["recipe"],
        **({"fork": sharpened["fork"]} if "fork" in sharpened else {}),
    }
    out.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        if (source / name).is_file():
            shutil.copyfile(source / name, out / name)
    if recipe["seed"] != sharpened["recipe"].get("seed"):
        tensors = {**tensors, "rng": torch.Generator().manual_seed(recipe["seed"]).get_state()}
    # the parent's path is relative to the folder
    parent_path = os.path.relpath((source / sharpened.get("parent_path", "")).resolve(), out.resolve())
    forked = {**sharpened, "parent_path": parent_path, "recipe": recipe, "fork": record}
    atomic_save_tensors(out / STATE, tensors)
    atomic_write_json(out / CONFIG, {**config, "sharpen": forked})
    atomic_write_json(out / STATE_JSON, meta)  # last: only a whole fork can be resumed
