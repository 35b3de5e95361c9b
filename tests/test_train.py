import json
import math
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import training
from tests.conftest import ENV, ROOT, TINY_FLAGS, TINY_MODEL
from training import train as train_module
from training.checkpoint import read_history
from training.model import ConvVAE, LossParts, ModelConfig
from training.train import TrainConfig, TrainingError, train


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "training", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=ENV
    )


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


def test_cli_end_to_end_on_tiny_idx_files(tiny_mnist: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = cli(
        "train", "--out", str(out), "--data-dir", str(tiny_mnist), "--epochs", "3", "--batch-size", "32", *TINY_FLAGS
    )
    assert result.returncode == 0, result.stderr
    assert "saved" in result.stdout and "kNN-5" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert f", {metrics['active_units']} of 8 latents in use, " in result.stdout
    assert 0 <= metrics["active_units"] <= 8 and metrics["latent_spread"] > 0
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "history.jsonl",
        "metrics.json",
        "model.safetensors",
        "state.json",
        "state.safetensors",
    ]
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["epochs"] == 3 and config["model"]["latent_dim"] == 8
    assert config["dataset"]["name"] == "mnist" and "torch" in config["versions"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final"] and metrics["step"] == 3 * (256 // 32)
    for key in (
        "neg_elbo_nats",
        "reconstruction_nats",
        "kl_nats",
        "mse_per_pixel",
        "knn5_accuracy",
        "train_seconds",
        "images_per_second",
        "device",
    ):
        assert key in metrics
    assert metrics["neg_elbo_nats"] == pytest.approx(metrics["reconstruction_nats"] + metrics["kl_nats"])

    result = cli("evaluate", str(out), "--data-dir", str(tiny_mnist), "--iw-samples", "8", "--json")
    assert result.returncode == 0, result.stderr
    evaluated = json.loads(result.stdout)
    assert evaluated["iw_samples"] == 8 and evaluated["test_images"] == 64
    # the importance-sampled bound is tighter than the ELBO (up to Monte Carlo noise)
    assert evaluated["iw_nll_nats"] < evaluated["neg_elbo_nats"] + 1.0

    model = training.load_model(out)
    assert model.decode(torch.zeros(2, 8)).shape == (2, 1, 28, 28)


def test_cli_output_is_complete_when_piped(tiny_mnist: Path, tmp_path: Path) -> None:
    # `python -m training` leaves with os._exit (no 0.4 s interpreter teardown): what it printed
    # into a block-buffered pipe must still all arrive
    out = tmp_path / "run"
    assert (
        cli(
            "train",
            "--out",
            str(out),
            "--data-dir",
            str(tiny_mnist),
            "--max-steps",
            "2",
            "--batch-size",
            "32",
            *TINY_FLAGS,
        ).returncode
        == 0
    )
    env = {k: v for k, v in ENV.items() if k != "PYTHONUNBUFFERED"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            "evaluate",
            str(out),
            "--data-dir",
            str(tiny_mnist),
            "--iw-samples",
            "2",
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["iw_samples"] == 2


def test_cli_trains_a_conditional_vae(tiny_mnist: Path, tmp_path: Path) -> None:
    out = tmp_path / "cvae"
    result = cli(
        "train",
        "--conditional",
        "--out",
        str(out),
        "--data-dir",
        str(tiny_mnist),
        "--epochs",
        "2",
        "--batch-size",
        "32",
        *TINY_FLAGS,
    )
    assert result.returncode == 0, result.stderr
    model = training.load_model(out)
    assert model.config.num_classes == 10  # MNIST's classes
    z = torch.zeros(2, 8)
    assert not torch.equal(*model.decode(z, torch.tensor([0, 3])))
    result = cli("evaluate", str(out), "--data-dir", str(tiny_mnist), "--iw-samples", "4", "--json")
    assert result.returncode == 0, result.stderr


def test_seed_recipe_sets_the_write_up_values(tiny_mnist: Path, tmp_path: Path) -> None:
    result = cli(
        "train",
        "--recipe",
        "seed",
        "--max-steps",
        "5",
        "--out",
        str(tmp_path / "r"),
        "--data-dir",
        str(tiny_mnist),
        *TINY_FLAGS,
    )
    assert result.returncode == 0, result.stderr
    train_config = json.loads((tmp_path / "r" / "config.json").read_text())["train"]
    assert (train_config["loss"], train_config["lr"], train_config["batch_size"], train_config["beta"]) == (
        "mse",
        5e-4,
        32,
        1.0,
    )
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["step"] == 5


def test_fast_recipe_sets_its_values_and_typed_flags_override_them() -> None:
    from training.cli import build_parser
    from training.commands.train import configs_from_args

    def configs(*flags: str) -> tuple[ModelConfig, TrainConfig]:
        return configs_from_args(build_parser().parse_args(["train", "--out", "r", *flags]))

    model_config, train_config = configs("--recipe", "fast")
    assert model_config == ModelConfig()  # the bundled model's architecture
    assert (
        train_config.epochs,
        train_config.batch_size,
        train_config.lr,
        train_config.weight_decay,
        train_config.eval_every,
        train_config.init,
    ) == (60, 256, 3e-3, 0.1, 10, "kaiming")
    assert (train_config.lr_schedule, train_config.warmup_steps, train_config.loss) == ("wsd", 50, "bce")
    _, typed = configs("--recipe", "fast", "--epochs", "5", "--lr", "1e-3")
    assert (typed.epochs, typed.lr, typed.batch_size) == (5, 1e-3, 256)


def test_handwriting_recipe_distorts_every_kind_and_typed_flags_override_it() -> None:
    from training.cli import build_parser
    from training.commands.train import configs_from_args, train_command

    def configs(*flags: str) -> TrainConfig:
        return configs_from_args(build_parser().parse_args(["train", "--out", "r", *flags]))[1]

    distortion = configs("--recipe", "handwriting").distortion()
    assert distortion.active
    assert all(
        getattr(distortion, kind) > 0 for kind in ("rotation", "scale", "shear", "shift", "thickness", "elastic")
    )
    typed = configs("--recipe", "handwriting", "--distort-elastic", "0", "--epochs", "3")
    assert (typed.distort_elastic, typed.epochs, typed.distort_rotation) == (0.0, 3, distortion.rotation)
    # the command that trains such a checkpoint again gives the same config back
    saved = {"model": {}, "train": asdict(typed), "dataset": {"name": "mnist"}}
    again = configs(*shlex.split(train_command(saved, "r"))[6:])  # after "python -m training train --out r"
    assert again == typed


def test_bad_data_gives_one_line_and_no_traceback(tiny_mnist: Path, tmp_path: Path) -> None:
    path = tiny_mnist / "train-images-idx3-ubyte.gz"
    path.unlink()
    (tiny_mnist / "train-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3]) + (256).to_bytes(4, "big") * 3 + bytes(10))
    result = cli("train", "--out", str(tmp_path / "r"), "--data-dir", str(tiny_mnist), *TINY_FLAGS)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "train-images-idx3-ubyte" in lines[0] and "truncated" in lines[0]
    debug = cli("train", "--out", str(tmp_path / "r"), "--data-dir", str(tiny_mnist), "--debug", *TINY_FLAGS)
    assert "Traceback" in debug.stderr


def test_resume_gives_the_same_weights_as_one_run(tiny_mnist: Path, tmp_path: Path) -> None:
    # constant lr: with the cosine schedule, max_steps also sets the schedule's length (the
    # signal test below covers resuming under the default cosine schedule)
    config = TrainConfig(epochs=3, batch_size=32, seed=3, lr_schedule="constant", weight_decay=0.1)
    train(TINY_MODEL, config, tmp_path / "straight", data_dir=tiny_mnist, progress=False)
    # stop mid-epoch (step 11 of 8-step epochs), then continue to the end
    train(TINY_MODEL, replace(config, max_steps=11), tmp_path / "split", data_dir=tiny_mnist, progress=False)
    assert json.loads((tmp_path / "split" / "state.json").read_text())["step"] == 11
    train(TINY_MODEL, config, tmp_path / "split", data_dir=tiny_mnist, resume=True, progress=False)
    assert_same_weights(tmp_path / "straight", tmp_path / "split")
    # the history goes on where it was: the first run's final row (step 11) stays, the rest are
    # the straight run's figures, and the row after the break counts its 5 steps
    straight, split = read_history(tmp_path / "straight"), read_history(tmp_path / "split")
    assert [r["step"] for r in split] == [8, 11, 16, 24] and [r["step"] for r in straight] == [8, 16, 24]
    for a, b in zip([split[0], *split[2:]], straight):
        assert a["test_neg_elbo_nats"] == b["test_neg_elbo_nats"] and a["test_mse_per_pixel"] == b["test_mse_per_pixel"]
    assert [r["train_steps"] for r in split] == [8, 3, 5, 8]


def test_a_run_saved_before_weight_decay_existed_resumes_without_it(tiny_mnist: Path, tmp_path: Path) -> None:
    out = tmp_path / "old"
    train(
        TINY_MODEL,
        TrainConfig(epochs=2, max_steps=3, batch_size=32, weight_decay=0.0),
        out,
        data_dir=tiny_mnist,
        progress=False,
    )
    config = json.loads((out / "config.json").read_text())
    del config["train"]["weight_decay"]
    (out / "config.json").write_text(json.dumps(config))
    _, resumed = train_module.resume_configs(out, epochs=None, max_steps=None, device=None)
    assert resumed.weight_decay == 0.0 and resumed.max_steps == 3


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_epoch_writes_a_resumable_checkpoint(
    tiny_mnist: Path, tmp_path: Path, signum: int, code: int
) -> None:
    flags = ["--data-dir", str(tiny_mnist), "--epochs", "12", "--batch-size", "8", "--seed", "5", *TINY_FLAGS]
    out = tmp_path / "interrupted"
    process = subprocess.Popen(
        [sys.executable, "-m", "training", "train", "--out", str(out), *flags],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    deadline = time.monotonic() + 60
    while not (out / "state.json").exists():  # first epoch saved: training is under way
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert "resume with --resume" in stderr and "Traceback" not in stderr
    stopped_at = json.loads((out / "state.json").read_text())["step"]
    assert 0 < stopped_at < 12 * 32

    resumed = cli("train", "--out", str(out), "--resume", "--data-dir", str(tiny_mnist), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    straight = cli("train", "--out", str(tmp_path / "straight"), *flags)
    assert straight.returncode == 0, straight.stderr
    assert_same_weights(out, tmp_path / "straight")
    # the same history, but for the row spanning the break, whose training loss covers the steps
    # after it (and the evaluation skipped when the break fell on an epoch's last step)
    by_step = {r["step"]: r for r in read_history(tmp_path / "straight")}
    rows = read_history(out)
    assert [r["step"] for r in rows] == [step for step in by_step if step != stopped_at] and len(by_step) == 12
    assert all(r["test_neg_elbo_nats"] == by_step[r["step"]]["test_neg_elbo_nats"] for r in rows)
    assert sum(r["train_steps"] for r in rows) == 12 * 32 - stopped_at % 32


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    tiny_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    # on the CPU: a GPU replays a captured step, which calls the loss function only while
    # capturing (tests/test_graphed.py and tests/test_cuda.py cover NaN there)
    config = TrainConfig(epochs=1, batch_size=32, device="cpu")
    train(TINY_MODEL, config, out, data_dir=tiny_mnist, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    calls = {"n": 0}
    real_loss = train_module.vae_loss

    def poisoned(*args: object, **kwargs: object) -> LossParts:
        parts = real_loss(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 5:
            return LossParts(parts.total * float("nan"), parts.reconstruction, parts.kl)
        return parts

    monkeypatch.setattr(train_module, "vae_loss", poisoned)
    with pytest.raises(
        TrainingError,
        match=r"The loss became nan at step 13; stopped without saving, the last good "
        r"checkpoint in " + re.escape(str(out)) + r" is intact \(try a lower --lr\)\.$",
    ):
        train(TINY_MODEL, replace(config, epochs=3), out, data_dir=tiny_mnist, resume=True, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    training.load_model(out)


def test_a_run_that_diverges_before_its_first_checkpoint_says_nothing_was_saved(
    tiny_mnist: Path, tmp_path: Path
) -> None:
    # lr 1e6 makes the loss non-finite within a few steps: the message must not send the user
    # looking for a "last good checkpoint" that was never written
    out = tmp_path / "run"
    config = TrainConfig(epochs=1, batch_size=32, lr=1e6, warmup_steps=0, device="cpu")
    with pytest.raises(
        TrainingError,
        match=r"^The loss became (nan|inf|-inf) at step \d+; stopped without saving, so "
        + re.escape(str(out))
        + r" holds no checkpoint yet \(try a lower --lr\)\.$",
    ):
        train(TINY_MODEL, config, out, data_dir=tiny_mnist, progress=False)
    assert sorted(p.name for p in out.iterdir()) == []


TORCH_OOM = (
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 7.63 GiB of which "
    "1.06 GiB is free. Including non-PyTorch memory, this process has 6.55 GiB memory in use."
)


def test_running_out_of_gpu_memory_stops_in_one_sentence_and_keeps_the_last_checkpoint(
    tiny_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # torch's own message is a paragraph about its allocator; a real one is raised in
    # tests/test_cuda.py, this one (on the CPU) after the first epoch's checkpoint
    out = tmp_path / "run"
    real_step, calls = train_module.train_step, {"n": 0}

    def step_then_oom(*args: object, **kwargs: object) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 11:
            raise torch.OutOfMemoryError(TORCH_OOM)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", step_then_oom)
    with pytest.raises(
        TrainingError,
        match=r"^The GPU ran out of memory \(it needed 2.00 GiB more\); stopped, the last "
        r"good checkpoint in " + re.escape(str(out)) + r" is intact \(lower "
        r"--batch-size than 32, .* or pass --device cpu\)\.$",
    ):
        train(TINY_MODEL, TrainConfig(epochs=2, batch_size=32, device="cpu"), out, data_dir=tiny_mnist, progress=False)
    assert json.loads((out / "state.json").read_text())["step"] == 8  # the first epoch's, loadable
    training.load_model(out)


def test_a_data_set_larger_than_the_gpus_free_memory_is_refused_before_it_is_copied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (1_000_000_000, 8_000_000_000))
    with pytest.raises(
        TrainingError,
        match=r"^The data set takes 2.5 GB as float32 and the GPU has 1.0 of its 8.0 GB "
        r"free; train on smaller or fewer images, or pass --device cpu\.$",
    ):
        train_module.check_fits_on_gpu(2_500_000_000, torch.device("cuda", 0))
    train_module.check_fits_on_gpu(900_000_000, torch.device("cuda", 0))  # fits
    train_module.check_fits_on_gpu(10**12, torch.device("cpu"))  # not the GPU's concern


def test_other_commands_say_the_gpu_ran_out_of_memory_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from training import cli
    from training.commands import evaluate

    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise torch.OutOfMemoryError(TORCH_OOM)

    monkeypatch.setattr(evaluate, "load_for_batches", out_of_memory)
    assert cli.main(["evaluate", str(ROOT / "checkpoints" / "mnist-z8")]) == cli.EXIT_USER_ERROR
    assert (
        capsys.readouterr().err == "error: The GPU ran out of memory; free it of other programs or pass --device cpu.\n"
    )


@pytest.mark.parametrize("epochs", [1, 3])  # stopped by the final evaluation; by the first of several
def test_a_dead_encoder_stops_the_run_before_it_is_saved(tiny_mnist: Path, tmp_path: Path, epochs: int) -> None:
    # far too large a first step (lr 0.1, no warm-up) switches off every unit of an encoder
    # layer in the first epoch: the encoder then gives every image the same latent for good,
    # and the run would go on to save a model that draws one image
    out = tmp_path / "run"
    config = TrainConfig(epochs=epochs, batch_size=32, lr=0.1, warmup_steps=0, precision="fp32", device="cpu")
    with pytest.raises(
        TrainingError,
        match=r"^At step 8 the encoder gave every test image the same latent .*"
        r"stopped without saving, so " + re.escape(str(out)) + r" holds no checkpoint yet \(retrain with a "
        r"lower --lr than 0.1 or a longer --warmup-steps than 0\)\.$",
    ):
        train(TINY_MODEL, config, out, data_dir=tiny_mnist, progress=False)
    assert not (out / "model.safetensors").exists() and not (out / "metrics.json").exists()


def test_a_healthy_run_reports_its_active_latent_units(tiny_mnist: Path, tmp_path: Path) -> None:
    metrics = train(
        TINY_MODEL,
        TrainConfig(epochs=4, batch_size=32, lr=0.05, warmup_steps=0, precision="fp32", device="cpu"),
        tmp_path / "run",
        data_dir=tiny_mnist,
        progress=False,
    )
    assert metrics["active_units"] == 8 and metrics["latent_spread"] > 1.0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["active_units"] == 8


def test_unwritable_out_fails_before_training(tiny_mnist: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = cli("train", "--out", str(blocker / "run"), "--data-dir", str(tiny_mnist), *TINY_FLAGS)
    assert result.returncode == 2
    assert result.stderr.startswith("error: Cannot write to --out") and "Traceback" not in result.stderr


def test_a_full_disk_fails_before_training(tiny_mnist: Path, tmp_path: Path, monkeypatch) -> None:
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=1000))
    with pytest.raises(TrainingError, match="free some space"):
        train(TINY_MODEL, TrainConfig(epochs=1, batch_size=32), tmp_path / "run", data_dir=tiny_mnist, progress=False)
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_resume_refuses_flags_that_would_change_the_run_and_accepts_the_same_command(
    tiny_mnist: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    flags = ["--data-dir", str(tiny_mnist), "--batch-size", "32", "--lr", "3e-3", *TINY_FLAGS]
    assert cli("train", "--out", str(out), "--epochs", "2", "--max-steps", "3", *flags).returncode == 0
    before = weights(out)
    changed = cli(
        "train",
        "--out",
        str(out),
        "--resume",
        "--epochs",
        "3",
        "--lr",
        "1e-3",
        "--conv-channels",
        "8,8,8",
        "--data-dir",
        str(tiny_mnist),
        "--quiet",
    )
    assert changed.returncode == 2 and "Traceback" not in changed.stderr
    assert changed.stderr.startswith(
        f"error: --resume continues {out} as it was saved, and --lr 0.001 (saved: 0.003), "
        "--conv-channels 8,8,8 (saved: 4,8,8) would change it;"
    )
    assert all(torch.equal(before[k], v) for k, v in weights(out).items())  # nothing trained, nothing written
    # the same command again with --resume (and a new stopping point): it continues
    same = cli("train", "--out", str(out), "--resume", "--epochs", "2", "--max-steps", "0", *flags)
    assert same.returncode == 0, same.stderr
    assert json.loads((out / "metrics.json").read_text())["step"] == 2 * (256 // 32)


def test_existing_run_needs_resume(tiny_mnist: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert (
        cli("train", "--out", str(out), "--data-dir", str(tiny_mnist), "--max-steps", "2", *TINY_FLAGS).returncode == 0
    )
    again = cli("train", "--out", str(out), "--data-dir", str(tiny_mnist), "--max-steps", "2", *TINY_FLAGS)
    assert again.returncode == 2 and "pass --resume" in again.stderr


def test_cuda_request_without_gpu_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(TrainingError, match="no CUDA GPU"):
        train_module.pick_device("cuda")
    assert train_module.pick_device("auto").type == "cpu"


@pytest.mark.parametrize(
    "bad",
    [
        dict(epochs=0),
        dict(lr=-1.0),
        dict(loss="l1"),
        dict(beta=float("nan")),
        dict(device="tpu"),
        dict(dataset="cifar"),
        dict(lr_schedule="step"),
        dict(warmup_steps=-1),
        dict(precision="fp16"),
        dict(weight_decay=-0.1),
        dict(weight_decay=float("inf")),
        dict(eval_every=0),
        dict(init="xavier"),
    ],
)
def test_invalid_train_config(bad: dict) -> None:
    with pytest.raises(ValueError):
        TrainConfig(**bad)


def test_kaiming_init_draws_each_weight_at_its_fan_in_variance_and_leaves_biases() -> None:
    torch.manual_seed(0)
    model = ConvVAE(ModelConfig())
    biases = {name: p.clone() for name, p in model.named_parameters() if name.endswith("bias")}
    train_module.init_kaiming(model)
    checked = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            fan_in = module.in_features
        elif isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            fan_in = module.in_channels * 9
        else:
            continue
        w = module.weight.detach()
        if w.numel() >= 2000:  # enough draws for the sample's spread to be within 7% of the law's
            assert float(w.std()) == pytest.approx((2 / fan_in) ** 0.5, rel=0.07), module
            assert abs(float(w.mean())) < 0.1 * (2 / fan_in) ** 0.5
            checked += 1
    assert checked >= 6
    assert all(torch.equal(p, biases[name]) for name, p in model.named_parameters() if name.endswith("bias"))
    torch.manual_seed(0)
    again = ConvVAE(ModelConfig())
    train_module.init_kaiming(again)  # seeded: the same start every time
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))


def test_the_init_flag_starts_the_run_from_kaiming_weights_and_is_saved(tiny_mnist: Path, tmp_path: Path) -> None:
    starts = {}
    for init in ("pytorch", "kaiming"):
        result = cli(
            "train",
            "--out",
            str(tmp_path / init),
            "--data-dir",
            str(tiny_mnist),
            "--max-steps",
            "1",
            "--lr",
            "1e-12",
            "--warmup-steps",
            "0",
            "--batch-size",
            "32",
            "--init",
            init,
            *TINY_FLAGS,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads((tmp_path / init / "config.json").read_text())["train"]["init"] == init
        starts[init] = weights(tmp_path / init)["encoder.0.weight"]  # one step at lr 1e-12: the start
    torch.manual_seed(0)
    reference = ConvVAE(TINY_MODEL)
    assert torch.allclose(starts["pytorch"], reference.encoder[0].weight, atol=1e-6)
    train_module.init_kaiming(reference)
    assert torch.allclose(starts["kaiming"], reference.encoder[0].weight, atol=1e-6)


def test_a_kaiming_start_learns_mnist_faster_in_a_short_run(mnist_dir: Path, tmp_path: Path) -> None:
    # the fast recipe's reason (docs/model-notes.md), in 100 steps of batch 256
    config = TrainConfig(epochs=1, max_steps=100, batch_size=256, lr=3e-3, warmup_steps=25, device="cpu")
    mse = {
        init: train(ModelConfig(), replace(config, init=init), tmp_path / init, data_dir=mnist_dir, progress=False)[
            "mse_per_pixel"
        ]
        for init in ("pytorch", "kaiming")
    }
    assert mse["kaiming"] < 0.04 < mse["pytorch"], mse


def data_parallel_flags(data: Path) -> list[str]:
    """12 fp32 steps of global batch 32: one process, or several taking slices of each batch."""
    return [
        "--data-dir",
        str(data),
        "--batch-size",
        "32",
        "--max-steps",
        "12",
        "--epochs",
        "2",
        "--precision",
        "fp32",
        "--warmup-steps",
        "0",
        *TINY_FLAGS,
    ]


def assert_trained_like_one(one: Path, parallel: Path) -> None:
    """The data-parallel run's weights equal the single process's to rounding, after 12 steps."""
    a, b = weights(one), weights(parallel)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-5, rtol=1e-4), name
    assert json.loads((parallel / "metrics.json").read_text())["step"] == 12


def test_two_gloo_processes_train_like_one_with_the_same_global_batch(tiny_mnist: Path, tmp_path: Path) -> None:
    """torchrun with 2 CPU processes (gloo): each takes half of every global batch of 32 and the
    gradients are averaged, so the weights match one process's run to rounding. In fp32: under
    bf16 autocast each half-batch's gradients round differently (measured: 3e-3 apart after 12
    steps without warm-up, against 6e-8 in fp32)."""
    flags = data_parallel_flags(tiny_mnist)
    single = cli("train", "--out", str(tmp_path / "one"), *flags)
    assert single.returncode == 0, single.stderr
    parallel = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "training",
            "train",
            "--out",
            str(tmp_path / "two"),
            *flags,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    assert parallel.returncode == 0, parallel.stderr[-2000:]
    assert parallel.stdout.count("saved ") == 1  # process 0 reports and writes, once
    assert_trained_like_one(tmp_path / "one", tmp_path / "two")
    training.load_model(tmp_path / "two")  # an ordinary checkpoint folder


def test_a_dead_encoder_stops_every_process_with_one_line(tiny_mnist: Path, tmp_path: Path) -> None:
    # process 0 alone evaluates: the others must hear its verdict, or they die on a closed
    # connection in their next gradient exchange, each with a traceback
    out = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "training",
            "train",
            "--out",
            str(out),
            "--data-dir",
            str(tiny_mnist),
            "--batch-size",
            "32",
            "--epochs",
            "3",
            "--lr",
            "0.1",
            "--warmup-steps",
            "0",
            "--precision",
            "fp32",
            "--device",
            "cpu",
            *TINY_FLAGS,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    assert result.returncode != 0
    assert result.stderr.count("error: At step 8 the encoder gave every test image the same latent") == 1
    assert "[rank1]: Traceback" not in result.stderr and "Connection closed" not in result.stderr
    assert not (out / "model.safetensors").exists()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_machines_meet_by_rendezvous_and_train_like_one(tiny_mnist: Path, tmp_path: Path) -> None:
    """The README's multi-machine command, two "machines" on this one: two torchrun launchers,
    one process each, meeting at a c10d rendezvous endpoint; the global process 0 alone writes
    the checkpoint, which matches one process's run as in the test above."""
    flags = data_parallel_flags(tiny_mnist)
    single = cli("train", "--out", str(tmp_path / "one"), *flags)
    assert single.returncode == 0, single.stderr
    endpoint = f"127.0.0.1:{free_port()}"
    launchers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--node-rank",
                str(node),
                "--nproc-per-node",
                "1",
                "--rdzv-backend",
                "c10d",
                "--rdzv-endpoint",
                endpoint,
                "--rdzv-id",
                "test",
                "-m",
                "training",
                "train",
                "--out",
                str(tmp_path / "two"),
                *flags,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for node in (0, 1)
    ]
    try:
        outputs = [launcher.communicate(timeout=300) for launcher in launchers]
    finally:  # a rendezvous that never completes must not outlive the test
        for launcher in launchers:
            launcher.kill()
    for launcher, (_, stderr) in zip(launchers, outputs):
        assert launcher.returncode == 0, stderr[-2000:]
    assert sum(stdout.count("saved ") for stdout, _ in outputs) == 1  # one process, on one machine, wrote it
    assert_trained_like_one(tmp_path / "one", tmp_path / "two")


def test_learning_rate_schedules() -> None:
    total = 1000
    wsd = TrainConfig(lr=2e-3)  # the default: 50 warm-up steps, stable, decay over the last 30%
    lrs = [train_module.learning_rate(wsd, step, total) for step in range(total)]
    assert lrs[0] == pytest.approx(2e-3 / 50) and lrs[49] == pytest.approx(2e-3)
    assert all(lr == pytest.approx(2e-3) for lr in lrs[49:700])
    assert all(a >= b for a, b in zip(lrs[700:], lrs[701:]))  # decaying
    assert lrs[-1] < 1e-7
    cosine = [
        train_module.learning_rate(TrainConfig(lr=1e-3, lr_schedule="cosine", warmup_steps=0), s, total)
        for s in (0, 500, 999)
    ]
    assert cosine[0] == pytest.approx(1e-3) and cosine[1] == pytest.approx(5e-4) and cosine[2] < 1e-8
    constant = TrainConfig(lr=1e-3, lr_schedule="constant", warmup_steps=0)
    assert {train_module.learning_rate(constant, s, total) for s in (0, 500, 999)} == {1e-3}


def test_precision_choice() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not train_module.bf16_autocast("fp32", cpu) and not train_module.bf16_autocast("fp32", cuda)
    assert train_module.bf16_autocast("bf16", cpu) and train_module.bf16_autocast("auto", cuda)
    # on a CPU, auto means bf16 exactly where oneDNN computes it natively
    assert train_module.bf16_autocast("auto", cpu) == torch.ops.mkldnn._is_mkldnn_bf16_supported()


def test_the_decoder_starts_at_the_data_mean() -> None:
    model = ConvVAE(ModelConfig(channels=3, image_size=16, conv_channels=(4, 8), hidden_dim=16))
    images = torch.stack([torch.full((16, 16), v) for v in (0.1, 0.5, 0.8)]).expand(5, 3, 16, 16)
    train_module.init_output_bias(model, images)
    assert torch.allclose(torch.sigmoid(model.decoder[-1].bias), torch.tensor([0.1, 0.5, 0.8]), atol=1e-6)


def test_metrics_record_the_precision_and_the_stepping_rate(tiny_mnist: Path, tmp_path: Path) -> None:
    metrics = train(
        TINY_MODEL,
        TrainConfig(epochs=2, batch_size=32, precision="fp32"),
        tmp_path / "r",
        data_dir=tiny_mnist,
        progress=False,
    )
    assert metrics["precision"] == "fp32"
    # 16 steps of 32 images: images/s counts the steps only, so it beats images over all the run's time
    assert metrics["images_per_second"] > 16 * 32 / metrics["train_seconds"]


def test_eval_every_evaluates_and_checkpoints_every_nth_epoch_and_the_last(
    tiny_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved_at: list[int] = []
    real_save = train_module.save_training_state

    def recording(folder, model, optimizer, generator, step, config, elapsed_s) -> None:
        saved_at.append(step)
        real_save(folder, model, optimizer, generator, step, config, elapsed_s)

    monkeypatch.setattr(train_module, "save_training_state", recording)
    metrics = train(
        TINY_MODEL,
        TrainConfig(epochs=5, batch_size=32, eval_every=2),
        tmp_path / "r",
        data_dir=tiny_mnist,
        progress=False,
    )
    assert saved_at == [16, 32, 40]  # 8 steps per epoch: after epochs 2 and 4, and at the end
    assert metrics["step"] == 40 and len(metrics["epoch_seconds"]) == 5


def test_the_history_has_a_row_per_evaluation_with_the_training_loss_since_the_last(
    tiny_mnist: Path, tmp_path: Path
) -> None:
    config = TrainConfig(epochs=5, batch_size=32, eval_every=2, warmup_steps=10)
    metrics = train(TINY_MODEL, config, tmp_path / "r", data_dir=tiny_mnist, progress=False)
    rows = read_history(tmp_path / "r")
    assert [(r["step"], r["epoch"], r["train_steps"]) for r in rows] == [(16, 2.0, 16), (32, 4.0, 16), (40, 5.0, 8)]
    assert [r["lr"] for r in rows] == [train_module.learning_rate(config, r["step"] - 1, 40) for r in rows]
    losses = [r["train_loss_nats"] for r in rows]
    assert all(math.isfinite(v) and v > 0 for v in losses) and losses[0] > losses[-1]  # it learns
    assert [r["seconds"] for r in rows] == sorted(r["seconds"] for r in rows)
    # the last row is the final evaluation, metrics.json's figures; kNN only there (it encodes the training set)
    for key in ("neg_elbo_nats", "reconstruction_nats", "kl_nats", "mse_per_pixel", "active_units", "knn5_accuracy"):
        assert rows[-1][f"test_{key}"] == metrics[key], key
    assert "test_knn5_accuracy" not in rows[0] and rows[0]["test_neg_elbo_nats"] > rows[-1]["test_neg_elbo_nats"]


def test_resuming_a_finished_run_evaluates_again_without_a_second_history_row(tiny_mnist: Path, tmp_path: Path) -> None:
    config = TrainConfig(epochs=2, batch_size=32)
    train(TINY_MODEL, config, tmp_path / "r", data_dir=tiny_mnist, progress=False)
    before = read_history(tmp_path / "r")
    train(TINY_MODEL, config, tmp_path / "r", data_dir=tiny_mnist, resume=True, progress=False)
    # not a second row at the same step, with no steps and the optimizer's unset rate
    assert read_history(tmp_path / "r") == before and [r["step"] for r in before] == [8, 16]


def test_the_cli_leaves_a_finished_run_alone_on_resume(tiny_mnist: Path, tmp_path: Path) -> None:
    out = tmp_path / "done"
    flags = ["--data-dir", str(tiny_mnist), "--epochs", "2", "--batch-size", "32", *TINY_FLAGS]
    assert cli("train", "--out", str(out), *flags).returncode == 0
    assert cli("evaluate", str(out), "--data-dir", str(tiny_mnist), "--iw-samples", "4", "--write").returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # re-evaluating would have rewritten metrics.json without evaluate --write's figures
    again = cli("train", "--out", str(out), "--resume", *flags)
    assert again.returncode == 0, again.stderr
    assert (
        again.stdout
        == f"{out} has already run its 16 steps; nothing to do (raise --epochs or --max-steps to train it further).\n"
    )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    longer = cli("train", "--out", str(out), "--resume", *flags[:2], "--epochs", "3", *flags[4:])
    assert longer.returncode == 0, longer.stderr
    assert [r["step"] for r in read_history(out)] == [8, 16, 24]


def test_paths_typed_with_an_equals_sign_have_their_home_folder_expanded(tiny_mnist: Path, tmp_path: Path) -> None:
    # bash leaves `--out=~/runs/x` as typed; without expansion a folder named "~" would appear here
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            "train",
            "--out=~/runs/x",
            f"--data-dir={tiny_mnist}",
            "--epochs",
            "1",
            *TINY_FLAGS,
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
        env={**ENV, "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "runs" / "x" / "model.safetensors").is_file() and not (work / "~").exists()
