"""Benchmarks that must work when their machine comes: bench/step_ops.py sees the step that
`python -m training train` runs, every call of it; bench/gpu_variants.py, meant for a
GPU, runs its variants and writes its report (checked here on the CPU, its step run eagerly);
bench/score_speed.py ranks PNG files written from the test set and compares with the atlas;
bench/train_speed.py's CPU comparison, with a recipe in its pairs (`make bench`'s); bench/handwriting.py's
ablation trains a run per kind of distortion; bench/load_protocol.py drives sessions through
Streamlit's websocket protocol."""

import json
import math
from pathlib import Path

from bench import gpu_variants, handwriting, load_protocol, score_speed, step_ops, train_speed
from tests.conftest import BUNDLED, TINY_FLAGS


def _calls(rows: list[dict], op: str) -> float:
    return sum(r["calls_per_step"] for r in rows if r["op"].split(" ")[0] == op)


def test_step_ops_times_every_call_of_the_training_step(tiny_mnist: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = step_ops.main(
        ["--data-dir", str(tiny_mnist), "--batch-size", "8", "--steps", "3", "--warmup", "1", "--out", str(out)]
    )
    rows = result["rows"]
    # forward: 3 convolutions and 3 transposed ones; backward: the transposed layers' input
    # gradients are convolutions (3), and every layer's weight gradient a convolution_backward (6)
    assert _calls(rows, "convolution") == 9
    assert _calls(rows, "convolution_backward") == 6
    assert _calls(rows, "_fused_adam_") == 1  # one optimizer update per step
    assert _calls(rows, "threshold_backward") == 8  # the model's eight ReLUs, four on each side
    for r in rows:
        assert r["in_step_us"] > 0 and math.isfinite(r["alone_us"]) and r["alone_us"] > 0, r
    assert result["in_step_ms"] == sum(r["per_step_us"] for r in rows) / 1e3
    assert result["step_ms_untimed"] > 0
    saved = json.loads((out / "step_ops.json").read_text())
    assert saved["batch"] == 8 and len(saved["rows"]) == len(rows)
    table = (out / "step_ops.md").read_text()
    assert "| convolution_backward (" in table and "batch 8" in table


def test_gpu_variants_runs_each_variant_and_writes_its_report(tiny_mnist: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    common = ["--device", "cpu", "--data-dir", str(tiny_mnist), "--batch-size", "8", "--out", str(out)]
    gpu_variants.main([*common, "--epochs", "2", "--steps", "3"])
    rows = json.loads((out / "gpu_variants.json").read_text())["rows"]
    # torch.compile is skipped off a GPU (20 s to compile); the others train
    assert [r["label"] for r in rows] == [
        "as trained (channels-last, graph)",
        "NCHW",
        "cudnn.benchmark",
        "as trained, not captured",
        "fp32 (`--precision fp32`)",
    ]
    for r in rows:
        assert "error" not in r, r
        assert r["batch"] == 8 and len(r["epoch_seconds"]) == 2 and r["images_per_second"] > 0
        assert len(r["epoch_losses"]) == 2 and r["epoch_losses"][-1] == r["last_epoch_loss"]
        assert math.isfinite(r["last_epoch_loss"]) and 0 < r["test_mse"] < 1
    # the same seed and steps: the layout changes rounding only, cuDNN's autotuner nothing on a
    # CPU, and off a GPU every step runs eagerly, captured or not
    assert rows[2]["epoch_losses"] == rows[3]["epoch_losses"] == rows[0]["epoch_losses"]
    assert abs(rows[1]["last_epoch_loss"] - rows[0]["last_epoch_loss"]) < 1e-2 * rows[0]["last_epoch_loss"]
    # fp32 rounds otherwise than bf16: a few percent after 6 steps, not a different run
    assert rows[4]["epoch_losses"] != rows[0]["epoch_losses"]
    assert abs(rows[4]["last_epoch_loss"] - rows[0]["last_epoch_loss"]) < 5e-2 * rows[0]["last_epoch_loss"]
    assert (out / "gpu_variants.md").read_text().count("| 8 |") == 5
    gpu_variants.main([*common, "--epochs", "1", "--steps", "2", "--only", "NCHW", "--only", "not captured"])
    rows = json.loads((out / "gpu_variants.json").read_text())["rows"]
    assert [r["label"] for r in rows] == ["NCHW", "as trained, not captured"]


def test_score_speed_ranks_test_images_written_as_files_where_the_atlas_has_them(
    mnist_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    score_speed.main([str(BUNDLED), "--data-dir", str(mnist_dir), "--limit", "300", "--out", str(out)])
    result = json.loads((out / "score_speed.json").read_text())
    assert result["files"] == 300 and result["images_per_second"] > 0
    # the same images, written as PNGs and prepared by MNIST's recipe, score as the atlas has them
    assert result["correlation_with_atlas"] > 0.99 and result["top20_overlap"] >= 18
    assert "| 300 |" in (out / "score_speed.md").read_text()


def test_train_speed_runs_the_recipe_in_its_pairs_and_reports_it(tiny_mnist: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    recipe = "--batch-size 64 --lr 3e-3 --warmup-steps 2 --init kaiming"
    train_speed.main(
        [
            "--device",
            "cpu",
            "--data-dir",
            str(tiny_mnist),
            "--epochs",
            "1",
            "--pairs",
            "1",
            "--recipe",
            recipe,
            "--out",
            str(out),
        ]
    )
    result = json.loads((out / "train_speed.json").read_text())
    assert result["recipe"] == recipe and len(result["ours_recipe"]) == 1 and len(result["pairs"]) == 1
    assert result["ours_recipe"][0]["test_mse"] != result["ours"][0]["test_mse"]  # another run than the default
    # the pair's command ran the recipe: the same seed and flags give the same test MSE
    assert result["pairs"][0]["ours_test_mse"] == result["ours_recipe"][0]["test_mse"]
    table = (out / "train_speed.md").read_text()
    assert f"| ours, whole command, `{recipe}` (" in table and f"our whole command (`{recipe}`) took" in table


def test_the_handwriting_ablation_trains_a_run_per_kind_and_keeps_finished_ones(
    tiny_mnist: Path, tmp_path: Path
) -> None:
    out, runs = tmp_path / "results", tmp_path / "runs"
    flags = ["ablation", "--data-dir", str(tiny_mnist), "--ablation-epochs", "1", "--epochs", "1"]
    flags += ["--train-flags", " ".join(TINY_FLAGS)]
    result = handwriting.main([*flags, "--runs", str(runs), "--out", str(out)])
    kinds = handwriting.DISTORTION_KINDS
    assert list(result["results"]) == ["none", "all", *kinds]
    for name in result["results"]:
        train = json.loads((runs / name / "config.json").read_text())["train"]
        distorted = {kind for kind in kinds if train[f"distort_{kind}"] > 0}
        assert distorted == {"none": set(), "all": set(kinds)}.get(name, {name})
        assert 0 <= result["results"][name]["all"]["knn5"] <= 1 and result["results"][name]["mnist_mse"] > 0
    assert "| thickness | " in (out / "handwriting_ablation.md").read_text()
    # a second call measures the finished runs again without training them
    written = (runs / "all" / "model.safetensors").stat().st_mtime_ns
    handwriting.main([*flags, "--runs", str(runs), "--out", str(out)])
    assert (runs / "all" / "model.safetensors").stat().st_mtime_ns == written


def test_the_protocol_load_harness_drives_sessions_without_a_browser(tmp_path: Path) -> None:
    """Two sessions through Streamlit's websocket protocol: every rerun finishes, every released
    latent reaches the server (the URL's z), every uploaded digit is scored; CPU and memory read."""
    result = load_protocol.main(
        ["--levels", "2", "--seconds", "12", "--think", "1", "--settle", "2", "--out", str(tmp_path)]
    )
    level = result["levels"][0]
    assert level["errors"] == 0 and level["completed"] == 2, level["error_examples"]
    assert level["bundles_fetched"] >= 2 * 3  # each: the decoders (sharpened and VAE) and the map's points
    assert level["reruns"] >= 4 and level["run"]["p50_ms"] > 0 and level["queueing"]["p50_ms"] >= 0
    assert level["server_cpu_s"] > 0 and min(level["memory_peak_mb"], result["one_session_memory_mb"]) > 100
    assert "| 2 | " in (tmp_path / "load_protocol.md").read_text()
