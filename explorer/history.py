"""How a checkpoint was trained, for the page's Training view: its recipe in a sentence and its
history (training/checkpoint.py's history.jsonl) as CSV."""

from __future__ import annotations

import csv
import io
import shlex
from dataclasses import fields, replace

from training.sharpen import SharpenConfig, recipe_from_saved
from training.train import HISTORY_METRICS, saved_train_config

# history.jsonl's columns in the order a spreadsheet shows them (training.train.history_row's);
# a row lacks the ones it has no value for
HISTORY_COLUMNS = (
    "step",
    "epoch",
    "seconds",
    "lr",
    "train_loss_nats",
    "train_steps",
    *(f"test_{key}" for key in HISTORY_METRICS),
)


def run_summary(config: dict, metrics: dict) -> str:
    """One sentence (markdown) of what CONFIG (a checkpoint's config.json) trained on and how,
    and, from METRICS (its metrics.json, possibly empty), where and how fast: "Trained on mnist
    and 2 copies of 2,430 printed digits, 90 epochs of batch 128 (45,540 steps): Adam at lr
    0.002 (wsd schedule, 50 warm-up steps), weight decay 0.1, Bernoulli likelihood, β = 1,
    PyTorch's initialisation, seed 0; bf16 on cpu (1 thread), 27.4 minutes at 4,012 images/s."."""
    train = saved_train_config(config.get("train", {}))
    dataset = config.get("dataset", {})
    data = train.dataset if train.dataset != "folder" else f"the image folder {dataset.get('path', '?')}"
    if train.printed_digits:
        sheet = dataset.get("printed_digits", 0) // train.printed_digits
        data += f" and {train.printed_digits} copies of {sheet:,} printed digits"
    steps, per_epoch = metrics.get("step"), config.get("steps_per_epoch")
    if steps and per_epoch:  # as it ran (--max-steps may have stopped it early)
        done = steps / per_epoch
        length = f"{done:.0f} epochs" if done == round(done) else f"{done:.2f} epochs"
        length += f" of batch {train.batch_size} ({steps:,} steps)"
    else:
        length = f"{train.epochs} epochs of batch {train.batch_size}"
    schedule = f"{train.lr_schedule} schedule" + (f", {train.warmup_steps} warm-up steps" if train.warmup_steps else "")
    likelihood = {"bce": "Bernoulli likelihood", "mse": "784·MSE (Gaussian) likelihood"}.get(train.loss, train.loss)
    init = {"pytorch": "PyTorch's initialisation", "kaiming": "Kaiming initialisation"}.get(train.init, train.init)
    sentence = (
        f"Trained on {data}, {length}: Adam at lr {train.lr:g} ({schedule}), weight decay "
        f"{train.weight_decay:g}, {likelihood}, β = {train.beta:g}, {init}, seed {train.seed}"
    )
    if "train_seconds" in metrics and "device" in metrics:
        minutes = metrics["train_seconds"] / 60
        took = f"{minutes:.1f} minutes" if minutes >= 1 else f"{metrics['train_seconds']:.1f} s"
        rate = f" at {metrics['images_per_second']:,.0f} images/s" if "images_per_second" in metrics else ""
        precision = f"{metrics['precision']} on " if "precision" in metrics else ""
        device = metrics["device"].replace("(1 threads)", "(1 thread)")  # as older checkpoints wrote it
        sentence += f"; {precision}{device}, {took}{rate}"
    return sentence + "."


def history_csv(rows: list[dict]) -> str:
    """History rows as CSV text: HISTORY_COLUMNS, then any others the rows have; an empty cell
    where a row has no value (the training loss of a row with no steps, kNN-5 before the end)."""
    columns = list(HISTORY_COLUMNS) + sorted({key for row in rows for key in row} - set(HISTORY_COLUMNS))
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if value is None else value for key, value in row.items()})
    return out.getvalue()


def sharpen_summary(config: dict, metrics: dict) -> str:
    """One sentence (markdown) of how a sharpened checkpoint (CONFIG: its config.json) was made
    from its parent, and from METRICS where and how long."""
    sharpened = config["sharpen"]
    recipe = saved_sharpen_recipe(sharpened)
    widths = config.get("model", {}).get("decoder_channels") or []
    decoder = (
        f"a residual decoder ({', '.join(map(str, widths))} channels) distilled from it for "
        f"{recipe.adversarial_start:,} steps, then sharpened adversarially"
        if recipe.decoder == "residual"
        else "sharpened adversarially"
    )
    augment = ", ".join(recipe.augment) if recipe.augment else "none"
    averaged = f", weights averaged (EMA {recipe.ema:g})" if recipe.ema else ""
    fork = sharpened.get("fork")
    branched = f" (forked at step {fork['step']:,} from a run of seed {fork['recipe'].get('seed', 0)})" if fork else ""
    sentence = (
        f"The decoder of **{sharpened.get('parent', '?')}**, {decoder} with its encoder frozen: "
        f"{recipe.steps:,} steps of batch {recipe.batch_size}, decoder lr {recipe.lr:g}, discriminator lr "
        f"{recipe.disc_lr:g} (width {recipe.disc_width}, R1 γ {recipe.r1_gamma:g}, augmentation: {augment}), "
        f"adversarial weight {recipe.adversarial_weight:g} (adaptive), feature weight {recipe.feature_weight:g}"
        f"{averaged}, seed {recipe.seed}{branched}"
    )
    if "train_seconds" in metrics and "device" in metrics:
        sentence += f"; {metrics['device']}, {metrics['train_seconds'] / 60:.1f} minutes"
    if "mse_per_pixel" in metrics and "parent_mse_per_pixel" in metrics:
        sentence += f"; test MSE {metrics['mse_per_pixel']:.5f} (its parent's {metrics['parent_mse_per_pixel']:.5f})"
    return sentence + "."


def saved_sharpen_recipe(sharpened: dict) -> SharpenConfig:
    """The SharpenConfig of a config.json's sharpen section (training.sharpen.recipe_from_saved)."""
    return recipe_from_saved(sharpened.get("recipe", {}))


def sharpen_command(config: dict, out: str) -> str:
    """The `python -m training sharpen` commands that make a sharpened checkpoint (CONFIG) again
    from its parent beside it, into OUT: a flag for every recipe field off its default; for a
    fork (training/fork.py), the run it branched from first, then the fork, a line each."""
    sharpened = config["sharpen"]
    parent = f"checkpoints/{sharpened.get('parent', '?')}"
    return "\n".join(command_lines(parent, saved_sharpen_recipe(sharpened), sharpened.get("fork"), out))


def command_lines(parent: str, recipe: SharpenConfig, fork: dict | None, out: str) -> list[str]:
    """The commands that sharpen PARENT with RECIPE into OUT; FORK: the record of the run OUT
    branched from (its source's recipe, the step it was saved at), made first into OUT-trunk."""
    command = ["python", "-m", "training", "sharpen", parent]
    if not fork:
        return [shlex.join([*command, "--out", out, *recipe_flags(recipe, SharpenConfig())])]
    trunk, trunk_recipe = f"{out}-trunk", replace(recipe_from_saved(fork["recipe"]), steps=fork["step"])
    lines = command_lines(parent, trunk_recipe, fork.get("fork"), trunk)
    return [*lines, shlex.join([*command, "--fork", trunk, "--out", out, *recipe_flags(recipe, trunk_recipe)])]


def recipe_flags(recipe: SharpenConfig, base: SharpenConfig) -> list[str]:
    """A flag and its value for every field of RECIPE that differs from BASE's, but the device."""
    words = []
    for f in fields(SharpenConfig):
        value = getattr(recipe, f.name)
        if value != getattr(base, f.name) and f.name != "device":
            words += ["--" + f.name.replace("_", "-"), command_value(value)]
    return words


def command_value(value: object) -> str:
    """A recipe value as its flag takes it: 0.0004, 128,64,32 for a tuple, none for no policy."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return str(value)
