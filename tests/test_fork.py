"""python -m training sharpen --fork: a copy of a saved sharpening run continued with another seed
or another adversarial recipe, on a tiny model for a few steps on the CPU."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import training
from explorer.history import sharpen_command, sharpen_summary
from tests.conftest import ENV, ROOT, run_cli
from tests.test_sharpen import SHARPEN_FLAGS
from training.checkpoint import ENCODER_PREFIXES
from training.sharpen import SharpenConfig

# SHARPEN_FLAGS distil for 4 steps; the runs go on to STEPS
STEPS = "10"


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def sharpen(*args: str) -> None:
    result = run_cli("sharpen", *args)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def runs(tiny_parent: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A distillation (the trunk); its forks with its own recipe and with seed 2 and a higher
    decoder lr; and the whole recipe run straight through."""
    folder, data = tiny_parent
    root = tmp_path_factory.mktemp("fork")
    runs = {name: root / name for name in ("trunk", "same", "other", "straight")}
    sharpen(str(folder), "--out", str(runs["trunk"]), "--steps", "4", *SHARPEN_FLAGS, "--data-dir", str(data))
    fork = [str(folder), "--fork", str(runs["trunk"]), "--steps", STEPS, "--quiet", "--data-dir", str(data)]
    sharpen(*fork, "--out", str(runs["same"]))
    sharpen(*fork, "--out", str(runs["other"]), "--seed", "2", "--lr", "0.001")
    sharpen(str(folder), "--out", str(runs["straight"]), "--steps", STEPS, *SHARPEN_FLAGS, "--data-dir", str(data))
    return runs


def test_a_fork_with_the_runs_own_recipe_continues_it(runs: dict[str, Path]) -> None:
    straight, same = weights(runs["straight"]), weights(runs["same"])
    assert straight.keys() == same.keys() and all(torch.equal(straight[k], same[k]) for k in straight)


def test_a_fork_with_another_seed_and_lr_branches_and_says_where_from(
    tiny_parent: tuple[Path, Path], runs: dict[str, Path]
) -> None:
    other, same = weights(runs["other"]), weights(runs["same"])
    assert all(torch.equal(other[k], same[k]) for k in other if k.startswith(ENCODER_PREFIXES))
    assert any(not torch.equal(other[k], same[k]) for k in other if not k.startswith(ENCODER_PREFIXES))
    config = json.loads((runs["other"] / "config.json").read_text())
    recipe, record = config["sharpen"]["recipe"], config["sharpen"]["fork"]
    assert (recipe["seed"], recipe["lr"], recipe["steps"]) == (2, 0.001, int(STEPS))
    # the record survives the run's own saves, and names the start
    trunk_config = json.loads((runs["trunk"] / "config.json").read_text())
    assert record["from"] == "trunk" and record["step"] == 4 and record["recipe"] == trunk_config["sharpen"]["recipe"]
    assert len(record["state_sha256"]) == 64
    # the trunk is left as it was; the fork finds its parent from its own folder and has the trunk's past
    assert json.loads((runs["trunk"] / "state.json").read_text())["step"] == 4
    assert (runs["other"] / config["sharpen"]["parent_path"]).resolve() == tiny_parent[0].resolve()
    assert [row for row in training.read_history(runs["other"]) if row["step"] <= 4] == training.read_history(
        runs["trunk"]
    )
    summary = sharpen_summary(config, json.loads((runs["other"] / "metrics.json").read_text()))
    assert "decoder lr 0.001" in summary and "seed 2 (forked at step 4 from a run of seed 0)" in summary


def test_the_commands_the_page_shows_for_a_fork_make_it_again(tiny_parent: tuple[Path, Path], runs: dict) -> None:
    folder, data = tiny_parent
    lines = sharpen_command(json.loads((runs["other"] / "config.json").read_text()), "runs/again").splitlines()
    assert lines[0].startswith("python -m training sharpen checkpoints/tiny --out runs/again-trunk --steps 4 ")
    assert lines[1] == (
        "python -m training sharpen checkpoints/tiny --fork runs/again-trunk --out runs/again --steps 10 --lr 0.001 "
        "--seed 2"
    )
    env = {**ENV, "PYTHONPATH": str(ROOT)}
    for line in lines:  # from a folder with the parent in checkpoints/, as the page's commands expect
        words = [*shlex.split(line), "--quiet", "--data-dir", str(data)]
        result = subprocess.run([sys.executable, *words[1:]], cwd=folder.parent.parent, env=env,
                                capture_output=True, text=True, timeout=180)  # fmt: skip
        assert result.returncode == 0, (line, result.stderr)
    again, other = weights(folder.parent.parent / "runs" / "again"), weights(runs["other"])
    assert all(torch.equal(again[k], other[k]) for k in other)


def test_a_fork_of_a_fork_is_made_again_from_its_first_run() -> None:
    first = asdict(SharpenConfig(seed=1, steps=6000, adversarial_start=6000))
    second = {**first, "seed": 2, "steps": 8000}
    config = {
        "sharpen": {
            "parent": "mnist-z8",
            "recipe": {**first, "seed": 3, "steps": 10000, "ema": 0.999},
            "fork": {"from": "b", "step": 8000, "recipe": second, "fork": {"from": "a", "step": 6000, "recipe": first}},
        }
    }
    assert sharpen_command(config, "runs/c").splitlines() == [
        "python -m training sharpen checkpoints/mnist-z8 --out runs/c-trunk-trunk --steps 6000 --adversarial-start "
        "6000 --seed 1",
        "python -m training sharpen checkpoints/mnist-z8 --fork runs/c-trunk-trunk --out runs/c-trunk --steps 8000 "
        "--seed 2",
        "python -m training sharpen checkpoints/mnist-z8 --fork runs/c-trunk --out runs/c --steps 10000 --ema 0.999 "
        "--seed 3",
    ]


def test_what_a_fork_may_not_change_or_overwrite_is_refused(
    tiny_parent: tuple[Path, Path], runs: dict[str, Path], tmp_path: Path
) -> None:
    folder, data = tiny_parent
    fork = ["sharpen", str(folder), "--fork", str(runs["trunk"]), "--data-dir", str(data), "--quiet"]
    cases = {
        ("--out", str(tmp_path / "wider"), "--disc-width", "16"): "--disc-width 16 (saved: 8)",
        ("--out", str(runs["other"]), "--seed", "3"): "already holds a run",
        ("--out", str(runs["trunk"])): "is the run being forked",
        ("--out", str(tmp_path / "both"), "--resume"): "pass one of them",
    }
    for flags, message in cases.items():
        result = run_cli(*fork, *flags)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, flags
    not_sharpened = run_cli("sharpen", str(folder), "--fork", str(folder), "--out", str(tmp_path / "x"))
    assert not_sharpened.returncode == 2 and "holds no valid sharpening recipe" in not_sharpened.stderr
    assert not (tmp_path / "wider").exists() and not (tmp_path / "both").exists()
    assert json.loads((runs["other"] / "config.json").read_text())["sharpen"]["recipe"]["seed"] == 2
