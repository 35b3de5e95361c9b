"""How a checkpoint was trained, as the page's Training view shows it: the command that trains
it again (training.commands.train.train_command), its recipe in a sentence and its history's curves and
CSV (explorer/history.py, explorer/figures.py)."""

from __future__ import annotations

import csv
import io
import json
import shlex
from dataclasses import asdict
from pathlib import Path

import pytest

from explorer.figures import history_figure
from explorer.history import HISTORY_COLUMNS, history_csv, run_summary
from training.checkpoint import read_history, read_metrics
from training.cli import build_parser
from training.commands.train import configs_from_args, train_command
from training.model import ModelConfig
from training.train import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = sorted(p.parent.name for p in (ROOT / "checkpoints").glob("*/config.json"))
SHARPENED = [
    name for name in BUNDLED if "sharpen" in json.loads((ROOT / "checkpoints" / name / "config.json").read_text())
]


def configs_of(command: str) -> tuple[ModelConfig, TrainConfig]:
    """The configs `python -m training train ...` COMMAND would train with."""
    words = shlex.split(command)
    assert words[:4] == ["python", "-m", "training", "train"]
    return configs_from_args(build_parser().parse_args(words[3:]))


@pytest.mark.parametrize("name", BUNDLED)
def test_the_command_trains_each_bundled_checkpoint_as_it_was_trained(name: str) -> None:
    config = json.loads((ROOT / "checkpoints" / name / "config.json").read_text())
    command = train_command(config, f"runs/{name}")
    model, train = configs_of(command)
    # a sharpened checkpoint's encoder is its parent's, trained by this command
    assert model == ModelConfig.from_dict(config.get("sharpen", {}).get("parent_model", config["model"]))
    # fields the checkpoint predates (init, eval_every, cuda_graphs) take their defaults, as --resume would
    assert train == TrainConfig(**config["train"])


def test_the_command_names_every_field_that_differs_from_its_default() -> None:
    train = TrainConfig(
        dataset="folder",
        epochs=7,
        max_steps=500,
        batch_size=64,
        lr=3e-4,
        lr_schedule="cosine",
        warmup_steps=0,
        weight_decay=0.05,
        init="kaiming",
        loss="mse",
        beta=0.5,
        seed=9,
        device="cpu",
        precision="fp32",
        eval_every=3,
        cuda_graphs=False,
    )
    model = ModelConfig(latent_dim=16, channels=3, image_size=32, conv_channels=(8, 16), hidden_dim=64)
    config = {"model": model.to_dict(), "train": asdict(train), "dataset": {"path": "/data/my paintings"}}
    command = train_command(config, "runs/paintings")
    assert command == (
        "python -m training train --out runs/paintings --dataset folder --epochs 7 --max-steps 500 "
        "--batch-size 64 --lr 0.0003 --lr-schedule cosine --warmup-steps 0 --weight-decay 0.05 "
        "--init kaiming --loss mse --beta 0.5 --seed 9 --device cpu --precision fp32 --eval-every 3 "
        "--no-cuda-graphs --latent-dim 16 --channels 3 --image-size 32 --conv-channels 8,16 "
        "--hidden-dim 64 --data-dir '/data/my paintings'"
    )
    assert configs_of(command) == (model, train)
    # a conditional model: --conditional, which counts the data set's classes again
    conditional = {"model": ModelConfig(num_classes=10).to_dict(), "train": asdict(TrainConfig()), "dataset": {}}
    assert configs_of(train_command(conditional, "runs/c"))[0].num_classes == 10


def test_the_summary_says_what_the_model_was_trained_on_and_how() -> None:
    config = json.loads((ROOT / "checkpoints" / "mnist-z8" / "config.json").read_text())
    metrics = json.loads((ROOT / "checkpoints" / "mnist-z8" / "metrics.json").read_text())
    assert run_summary(config, metrics) == (
        "Trained on mnist and 2 copies of 2,430 printed digits, 90 epochs of batch 128 (45,540 steps): Adam at "
        "lr 0.002 (wsd schedule, 50 warm-up steps), weight decay 0.1, Bernoulli likelihood, β = 1, PyTorch's "
        "initialisation, seed 0; bf16 on cpu (1 thread), 27.4 minutes at 4,012 images/s."
    )
    # stopped early by --max-steps: the epochs it ran; without metrics (still training): the recipe alone
    short = {**config, "train": {**config["train"], "max_steps": 1000}}
    assert run_summary(short, {"step": 1000}).startswith(
        "Trained on mnist and 2 copies of 2,430 printed digits, 1.98 epochs of batch 128 (1,000 steps)"
    )
    assert run_summary(config, {}).endswith("PyTorch's initialisation, seed 0.")
    # a model of its data set alone names it alone
    fashion = json.loads((ROOT / "checkpoints" / "fashion-z8" / "config.json").read_text())
    assert run_summary(fashion, {}).startswith("Trained on fashion-mnist, 30 epochs of batch 128: Adam")
    folder = {
        **config,
        "train": {**config["train"], "dataset": "folder", "loss": "mse", "init": "kaiming", "printed_digits": 0},
        "dataset": {"path": "/data/monet"},
    }
    assert run_summary(folder, {}).startswith("Trained on the image folder /data/monet, 90 epochs")
    assert "784·MSE (Gaussian) likelihood, β = 1, Kaiming initialisation" in run_summary(folder, {})


ROWS = [
    {
        "step": 8,
        "epoch": 1.0,
        "seconds": 0.5,
        "lr": 0.002,
        "train_loss_nats": 300.0,
        "train_steps": 8,
        "test_neg_elbo_nats": 250.0,
        "test_mse_per_pixel": 0.05,
        "test_active_units": 3,
    },
    {
        "step": 11,
        "epoch": 1.375,
        "seconds": 0.7,
        "lr": 0.002,
        "train_loss_nats": None,
        "train_steps": 0,
        "test_neg_elbo_nats": 240.0,
        "test_mse_per_pixel": 0.04,
        "test_active_units": 4,
        "test_knn5_accuracy": 0.5,
    },
]


def test_the_history_csv_has_every_column_and_leaves_missing_values_empty() -> None:
    table = list(csv.DictReader(io.StringIO(history_csv(ROWS))))
    assert list(table[0]) == list(HISTORY_COLUMNS)
    assert [row["step"] for row in table] == ["8", "11"]
    assert table[1]["train_loss_nats"] == "" and table[0]["test_knn5_accuracy"] == ""
    assert table[1]["test_knn5_accuracy"] == "0.5" and table[0]["test_neg_elbo_nats"] == "250.0"
    # a column a later version adds is kept, after the known ones
    assert history_csv([{**ROWS[0], "test_new_figure": 1}]).splitlines()[0].endswith(",test_new_figure")


def test_the_history_figure_plots_losses_above_and_mse_below_against_the_epoch() -> None:
    figure = history_figure(ROWS)
    traces = {trace.name: trace for trace in figure.data}
    assert list(traces) == ["training loss (mean since the previous point)", "test −ELBO", "test MSE of decode(μ)"]
    assert all(tuple(trace.x) == (1.0, 1.375) for trace in figure.data)
    assert tuple(traces["training loss (mean since the previous point)"].y) == (300.0, None)  # a gap, not a zero
    assert tuple(traces["test −ELBO"].y) == (250.0, 240.0) and tuple(traces["test MSE of decode(μ)"].y) == (0.05, 0.04)
    assert [trace.yaxis for trace in figure.data] == ["y", "y", "y2"]
    assert tuple(traces["test −ELBO"].customdata) == (8, 11)  # the step, in the hover


@pytest.mark.parametrize("name", SHARPENED)
def test_each_sharpened_history_has_a_row_per_evaluation_and_ends_at_its_metrics(name: str) -> None:
    folder = ROOT / "checkpoints" / name
    rows, metrics = read_history(folder), read_metrics(folder)
    recipe = json.loads((folder / "config.json").read_text())["sharpen"]["recipe"]
    every = recipe["eval_every"]
    steps = [row["step"] for row in rows]
    # evaluations every EVERY steps (or a multiple of it), each once, the last at the end; and
    # every step counted in one row
    assert steps == sorted(set(steps)) and steps[-1] == recipe["steps"]
    assert all(step % every == 0 for step in steps)
    assert sum(row["train_steps"] for row in rows) == rows[-1]["step"] == metrics["step"]
    assert rows[-1]["test_mse_per_pixel"] == pytest.approx(metrics["mse_per_pixel"], rel=1e-5)


@pytest.mark.parametrize("name", [name for name in BUNDLED if name not in SHARPENED])
def test_each_bundled_history_is_its_models_and_ends_at_its_metrics(name: str) -> None:
    folder = ROOT / "checkpoints" / name
    rows, metrics = read_history(folder), read_metrics(folder)
    config = json.loads((folder / "config.json").read_text())
    every, epochs = config["train"].get("eval_every", 1), config["train"]["epochs"]
    assert [row["epoch"] for row in rows] == [float(e) for e in range(every, epochs + 1, every)]
    assert sum(row["train_steps"] for row in rows) == rows[-1]["step"] == metrics["step"]
    for key in ("neg_elbo_nats", "reconstruction_nats", "kl_nats", "mse_per_pixel", "knn5_accuracy"):
        assert rows[-1][f"test_{key}"] == metrics[key], key  # evaluate --write recomputed them: the same weights
