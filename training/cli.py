"""python -m training {train,sharpen,evaluate,atlas,anomaly,score,sampler,patches,emoji} ...

Errors a user can cause (a bad file, a bad flag, no network) print one line and exit non-zero;
--debug shows the traceback as well."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import torch

from training.checkpoint import CONFIG, STATE_JSON, CheckpointError, atomic_write_json, read_json, read_metrics
from training.data import DATASET_NAMES, DataError, class_count
from training.loop import TrainingError, TrainingInterrupted, pick_device
from training.model import LOSSES, ModelConfig
from training.train import (
    DEVICES,
    INITS,
    LR_SCHEDULES,
    PRECISIONS,
    RECIPES,
    RESUMABLE,
    TrainConfig,
    planned_steps,
    saved_train_config,
)

EXIT_USER_ERROR = 2
EXIT_PARTIAL = 1  # score: every readable file ranked, some files could not be read


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        help="folder holding the IDX files (default: $LATENT_EXPLORER_DATA, "
        "else ~/.cache/latent-explorer, downloading what is missing), or the folder of "
        "images for --dataset folder",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    # Flags default to None so that only what the user typed overrides a recipe or a resumed run.
    t = sub.add_parser("train", help="train a conv VAE and write a checkpoint folder")
    t.add_argument("--out", required=True, help="checkpoint folder to write")
    t.add_argument(
        "--dataset",
        choices=DATASET_NAMES,
        help="mnist (default), fashion-mnist, or folder: every PNG/JPEG under --data-dir (a class per subfolder)",
    )
    t.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        help="'seed': the original project's 784·MSE+KL, "
        "Adam lr 5e-4, batch 32, 2000 iterations; 'fast': the bundled model's quality soonest, "
        "60 epochs of batch 256 from a Kaiming start (lr 3e-3, weight decay 0.1, evaluated every "
        "10 epochs). Flags typed beside it override its values",
    )
    t.add_argument("--epochs", type=int)
    t.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (0: no limit)")
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        help="wsd (default): constant, then a cosine decay to 0 over the last 30%% of the steps; "
        "cosine: decay from the start; constant",
    )
    t.add_argument("--warmup-steps", type=int, help="linear learning-rate warm-up (default 50; 0: none)")
    t.add_argument(
        "--weight-decay", type=float, help="AdamW's decoupled weight decay on the weights, not the biases (default 0)"
    )
    t.add_argument(
        "--init",
        choices=INITS,
        help="the weights' start: pytorch (default; its layers' own) or "
        "kaiming, N(0, 2/fan_in), which learns faster in a short run",
    )
    t.add_argument("--loss", choices=LOSSES, help="bce: Bernoulli likelihood (default); mse: 784·MSE")
    t.add_argument("--beta", type=float, help="weight on the KL term (1: the ELBO)")
    t.add_argument("--seed", type=int)
    t.add_argument("--device", choices=DEVICES)
    t.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="auto (default): bf16 autocast on CUDA and on CPUs with native bf16, else fp32",
    )
    t.add_argument("--eval-every", type=int, help="epochs between test-set evaluations and checkpoints (default 1)")
    t.add_argument(
        "--no-cuda-graphs",
        dest="cuda_graphs",
        action="store_const",
        const=False,
        help="on a GPU, launch each kernel of a step instead of replaying the step as a CUDA graph",
    )
    t.add_argument("--latent-dim", type=int)
    t.add_argument(
        "--conv-channels",
        type=lambda s: tuple(int(c) for c in s.split(",")),
        help="comma-separated widths, e.g. 32,64,64",
    )
    t.add_argument("--hidden-dim", type=int)
    t.add_argument(
        "--image-size",
        type=int,
        help="side of the square images (28 for the IDX sets; folder images are centre-cropped and resized to it)",
    )
    t.add_argument("--channels", type=int, choices=(1, 3), help="1: gray, 3: RGB (folder data sets)")
    t.add_argument(
        "--conditional",
        action="store_true",
        help="a conditional VAE: the encoder and the decoder "
        "also see the class label, and the page offers a class picker",
    )
    t.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_common(t)

    h = sub.add_parser(
        "sharpen",
        help="fine-tune a copy of a checkpoint's decoder adversarially, its encoder frozen, into a sharpened "
        "checkpoint with the same latent space",
    )
    h.add_argument("checkpoint", help="the checkpoint to sharpen (it needs its sampler: python -m training sampler)")
    h.add_argument("--out", required=True, help="the sharpened checkpoint folder to write")
    h.add_argument("--steps", type=int, help="decoder and discriminator steps (default 3000)")
    h.add_argument("--batch-size", type=int)
    h.add_argument("--lr", type=float, help="the decoder's learning rate")
    h.add_argument("--disc-lr", type=float, help="the discriminator's learning rate")
    h.add_argument("--feature-weight", type=float, help="weight of the discriminator-feature reconstruction")
    h.add_argument("--adversarial-weight", type=float, help="factor of the adaptive adversarial weight")
    h.add_argument(
        "--mixture-weight", type=float, help="the adversarial term on mixture draws against the one on reconstructions"
    )
    h.add_argument(
        "--noise-scale",
        type=float,
        help="the reconstructions' latents, mu + scale·sigma·eps: 1 posterior samples, 0 the means",
    )
    h.add_argument("--adversarial-start", type=int, help="steps of reconstruction alone before the adversarial term")
    h.add_argument("--disc-width", type=int, help="channels of the discriminator's first convolution")
    h.add_argument("--seed", type=int)
    h.add_argument("--eval-every", type=int, help="steps between evaluations and checkpoints")
    h.add_argument("--device", choices=DEVICES)
    h.add_argument("--resume", action="store_true", help="continue the sharpening in --out where it stopped")
    h.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_common(h)

    e = sub.add_parser("evaluate", help="test-set metrics of a checkpoint, with importance-sampled NLL")
    e.add_argument("checkpoint")
    e.add_argument("--iw-samples", type=int, default=100, help="importance samples per image (K)")
    e.add_argument("--limit", type=int, default=0, help="use only the first N test images (0: all)")
    e.add_argument("--device", choices=DEVICES, default="auto")
    e.add_argument("--json", action="store_true", help="print JSON instead of a table")
    e.add_argument("--write", action="store_true", help="also merge the figures into CHECKPOINT/metrics.json")
    _add_common(e)

    a = sub.add_parser("atlas", help="encode the test set and lay it out with UMAP, into the checkpoint")
    a.add_argument("checkpoint")
    a.add_argument("--limit", type=int, default=0, help="use only the first N test images (0: all)")
    a.add_argument("--seed", type=int, default=0)
    _add_common(a)
    m = sub.add_parser(
        "sampler",
        help="fit a Gaussian mixture to the training set's encoded means "
        "(sampler.safetensors in the checkpoint: better random samples)",
    )
    m.add_argument("checkpoint")
    m.add_argument("--components", type=int, default=10)
    m.add_argument("--seed", type=int, default=0)
    _add_common(m)

    s = sub.add_parser("patches", help="write an RGB data set cut from the photographs scikit-learn ships")
    s.add_argument("out", help="folder to write (one subfolder per photograph)")
    s.add_argument("--size", type=int, default=64)
    s.add_argument("--stride", type=int, default=16)
    s.add_argument("--debug", action="store_true", help="show tracebacks")

    j = sub.add_parser("emoji", help="write the Noto emoji (npm's emoji-datasource-google) as a folder per category")
    j.add_argument("out", help="folder to write (one subfolder per category)")
    j.add_argument("--cache", help="where the npm package is kept (default: the user cache)")
    j.add_argument("--debug", action="store_true", help="show tracebacks")

    o = sub.add_parser(
        "anomaly", help="how well anomaly scores tell the checkpoint's test set from another data set's (AUROC)"
    )
    o.add_argument("checkpoint")
    o.add_argument("--ood", required=True, choices=DATASET_NAMES, help="the other (out-of-distribution) data set")
    o.add_argument("--ood-data-dir", help="where the other data set is (default: as for --data-dir)")
    o.add_argument("--limit", type=int, default=0, help="use only the first N test images of each (0: all)")
    o.add_argument("--device", choices=DEVICES, default="auto")
    o.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_common(o)

    r = sub.add_parser(
        "score",
        help="rank your own images by anomaly score, most anomalous first, each placed among the checkpoint's test set",
    )
    r.add_argument("checkpoint")
    r.add_argument("paths", nargs="+", help="image files, or folders searched for .png and .jpg files")
    r.add_argument(
        "--method",
        choices=("complexity", "elbo"),
        default="complexity",
        help="complexity (default, the page's score): -ELBO minus the image's complexity, which "
        "stops simple images passing as normal; elbo: the plain -ELBO",
    )
    r.add_argument("--top", type=int, default=10, help="rows printed, and images on --sheet (default 10)")
    r.add_argument("--csv", help="write every image's scores and rank to this CSV file")
    r.add_argument("--sheet", help="write a PNG of the --top most anomalous images beside their reconstructions")
    r.add_argument("--device", choices=DEVICES, default="auto")
    r.add_argument("--json", action="store_true", help="print every image's scores as JSON instead of a table")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def _configs_from_args(args: argparse.Namespace) -> tuple[ModelConfig, TrainConfig]:
    train_values = dict(RECIPES[args.recipe]) if args.recipe else {}
    for f in fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            train_values[f.name] = value
    model_values = {}
    for f in fields(ModelConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            model_values[f.name] = value
    if args.conditional:
        model_values["num_classes"] = class_count(train_values.get("dataset", "mnist"), args.data_dir)
    if args.recipe == "seed" and args.epochs is None:
        train_values["epochs"] = 10_000  # the recipe stops on max_steps
    train_config = TrainConfig(**train_values)
    return ModelConfig(**model_values), train_config


def _flag(field: str) -> str:
    """The train command's flag for a config field: --batch-size for batch_size."""
    return "--" + field.replace("_", "-")


def _shown(value: object) -> str:
    """A config value as the train command takes it: 32,64,64 for a tuple of widths."""
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def train_command(config: dict, out: str) -> str:
    """The `python -m training train` command that trains a checkpoint's CONFIG (its
    config.json) again, into OUT: a flag for every field that differs from its default, the
    inverse of _configs_from_args (log_every, which changes no weight, has no flag). Fields a
    checkpoint predates take their defaults, as resuming it would."""
    train_config = saved_train_config(config["train"])
    model_config = ModelConfig.from_dict(dict(config["model"]))
    words = ["python", "-m", "training", "train", "--out", out]
    for source, default in ((train_config, TrainConfig()), (model_config, ModelConfig())):
        for f in fields(source):
            value = getattr(source, f.name)
            if value == getattr(default, f.name) or f.name == "log_every":
                continue
            if f.name == "cuda_graphs":
                words.append("--no-cuda-graphs")
            elif f.name == "num_classes":
                words.append("--conditional")
            else:
                words += [_flag(f.name), _shown(value)]
    path = config.get("dataset", {}).get("path")
    if path:
        words += ["--data-dir", path]
    return shlex.join(words)


def _finished_steps(out: str, train_config: TrainConfig) -> int | None:
    """The run's step count when the run saved in OUT has reached the end TRAIN_CONFIG sets,
    else None (from config.json's steps per epoch and state.json's step; None if either is
    missing, and the training loop decides)."""
    try:
        per_epoch = read_json(Path(out) / CONFIG).get("steps_per_epoch")
        step = read_json(Path(out) / STATE_JSON).get("step")
    except CheckpointError:  # the resume itself says what is wrong
        return None
    if not isinstance(per_epoch, int) or not isinstance(step, int):
        return None
    return step if step >= planned_steps(train_config, per_epoch) else None


def _changed_on_resume(args: argparse.Namespace, model_config: ModelConfig, train_config: TrainConfig) -> list[str]:
    """The flags typed with --resume that ask for other values than the run was saved with, as
    '--lr 0.001 (saved: 0.002)'. Flags that repeat the saved values are fine: the natural way
    to resume is the same command with --resume added."""
    typed = dict(RECIPES[args.recipe]) if args.recipe else {}
    typed.update(
        {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None}
    )
    changed = [
        (name, value, getattr(train_config, name))
        for name, value in typed.items()
        if name not in RESUMABLE and value != getattr(train_config, name)
    ]
    changed += [
        (f.name, getattr(args, f.name), getattr(model_config, f.name))
        for f in fields(ModelConfig)
        if getattr(args, f.name, None) is not None and getattr(args, f.name) != getattr(model_config, f.name)
    ]
    flags = [
        (
            "--no-cuda-graphs (saved: with CUDA graphs)"
            if name == "cuda_graphs"
            else f"{_flag(name)} {_shown(value)} (saved: {_shown(saved)})"
        )
        for name, value, saved in changed
    ]
    if args.conditional and not model_config.num_classes:
        flags.append("--conditional (saved: not conditional)")
    return flags


def cmd_train(args: argparse.Namespace) -> int:
    from training.train import resume_configs, train

    if args.resume:
        model_config, train_config = resume_configs(args.out, args.epochs, args.max_steps, args.device)
        changed = _changed_on_resume(args, model_config, train_config)
        if changed:  # silently ignored, they would leave the user believing the run had changed
            *others, last = [_flag(name) for name in RESUMABLE]
            raise TrainingError(
                f"--resume continues {args.out} as it was saved, and {', '.join(changed)} would change it; "
                f"drop them (a resumed run changes only {', '.join(others)} and {last}) or start a new run "
                "with another --out."
            )
        finished = _finished_steps(args.out, train_config)
        if finished is not None:  # evaluating it again would only rewrite its metrics (evaluate --write's too)
            print(
                f"{args.out} has already run its {finished:,} steps; nothing to do (raise --epochs or --max-steps "
                "to train it further)."
            )
            return 0
    else:
        if (Path(args.out) / STATE_JSON).exists():
            raise TrainingError(
                f"{args.out} already holds a run; pass --resume to continue it or choose another --out."
            )
        model_config, train_config = _configs_from_args(args)
    metrics = train(
        model_config, train_config, args.out, data_dir=args.data_dir, resume=args.resume, progress=not args.quiet
    )
    if not metrics:  # a data-parallel process other than the first: process 0 reports
        return 0
    print(
        f"saved {args.out}: test MSE {metrics['mse_per_pixel']:.5f}, -ELBO {metrics['neg_elbo_nats']:.2f} nats, "
        f"kNN-5 {metrics['knn5_accuracy']:.4f}, {metrics['active_units']} of {model_config.latent_dim} latents "
        f"in use, {metrics['train_seconds']:.1f} s"
    )
    return 0


def cmd_sharpen(args: argparse.Namespace) -> int:
    from training.sharpen import SharpenConfig, saved_sharpen_config, sharpen

    typed = {f.name: getattr(args, f.name) for f in fields(SharpenConfig) if getattr(args, f.name, None) is not None}
    if args.resume:
        saved = saved_sharpen_config(args.out)
        changed = [
            f"{_flag(name)} {_shown(value)} (saved: {_shown(getattr(saved, name))})"
            for name, value in typed.items()
            if name not in ("steps", "device") and value != getattr(saved, name)
        ]
        if changed:
            raise TrainingError(
                f"--resume continues {args.out} as it was saved, and {', '.join(changed)} would change it; drop them "
                "(a resumed sharpening changes only --steps and --device) or start again with another --out."
            )
        config = replace(saved, **{k: v for k, v in typed.items() if k in ("steps", "device")})
    else:
        config = SharpenConfig(**typed)
    metrics = sharpen(
        args.checkpoint, config, args.out, data_dir=args.data_dir, resume=args.resume, progress=not args.quiet
    )
    print(
        f"saved {args.out}: test MSE {metrics['mse_per_pixel']:.5f} "
        f"(its parent's {metrics['parent_mse_per_pixel']:.5f}), "
        f"-ELBO {metrics['neg_elbo_nats']:.2f} nats, {metrics['train_seconds']:.1f} s"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import checkpoint_data, importance_sampled_nll, load_for_batches, test_metrics

    if args.iw_samples < 1:
        raise ValueError("--iw-samples must be at least 1")
    _check_limit(args.limit)
    device = pick_device(args.device)
    model = load_for_batches(args.checkpoint, device)
    config = model.checkpoint_config
    loss = config["train"]["loss"]
    train_split, test_split = checkpoint_data(model, args.data_dir)
    test_images, test_labels = test_split.images, test_split.labels
    if args.limit:
        test_images, test_labels = test_images[: args.limit], test_labels[: args.limit]
    started = time.perf_counter()
    metrics = test_metrics(model, train_split.images, train_split.labels, test_images, test_labels, loss)
    nll = importance_sampled_nll(model, test_images, loss, samples=args.iw_samples, labels=test_labels)
    metrics["iw_nll_nats"] = float(nll.mean())
    metrics["iw_samples"] = args.iw_samples
    metrics["test_images"] = len(test_images)
    metrics["evaluate_seconds"] = time.perf_counter() - started
    if args.write:
        atomic_write_json(Path(args.checkpoint) / "metrics.json", {**read_metrics(args.checkpoint), **metrics})
    if args.json:
        print(json.dumps(metrics, indent=2, sort_keys=True))
    else:
        for key in ("neg_elbo_nats", "reconstruction_nats", "kl_nats", "iw_nll_nats", "mse_per_pixel", "knn5_accuracy"):
            print(f"{key:22s} {metrics[key]:.5f}")
        print(f"{'active_units':22s} {metrics['active_units']} of {model.config.latent_dim}")
        print(f"({len(test_images)} test images, K={args.iw_samples}, {metrics['evaluate_seconds']:.1f} s)")
    return 0


def _check_limit(limit: int) -> None:
    """--limit, checked before any work: a negative one sliced off the last images instead."""
    if limit < 0:
        raise ValueError(f"--limit {limit}: must be 0 (all the test images) or a positive count")


def cmd_atlas(args: argparse.Namespace) -> int:
    from training.atlas import build_atlas

    _check_limit(args.limit)
    path = build_atlas(args.checkpoint, data_dir=args.data_dir, limit=args.limit, seed=args.seed)
    print(f"wrote {path}")
    return 0


def cmd_sampler(args: argparse.Namespace) -> int:
    from training.evaluate import checkpoint_data, encode_dataset, load_for_batches
    from training.sampler import fit_mixture, save_sampler

    if args.components < 1:
        raise ValueError("--components must be at least 1")
    model = load_for_batches(args.checkpoint, pick_device("auto"))
    train_split = checkpoint_data(model, args.data_dir)[0]
    means, _ = encode_dataset(model, train_split.images, train_split.labels)
    path = save_sampler(args.checkpoint, fit_mixture(means.numpy(), args.components, args.seed))
    print(f"wrote {path} ({args.components} components fitted to {len(means)} training means)")
    return 0


def cmd_patches(args: argparse.Namespace) -> int:
    from training.images import write_sample_patches

    if args.size < 4 or args.stride < 1:
        raise ValueError("--size must be at least 4 and --stride at least 1")
    print(f"wrote {write_sample_patches(args.out, args.size, args.stride)} patches to {args.out}")
    return 0


def cmd_emoji(args: argparse.Namespace) -> int:
    from training.data import default_data_root
    from training.emoji import fetch_package, write_emoji_folder

    tarball = fetch_package(args.cache or default_data_root() / "npm")
    print(f"wrote {write_emoji_folder(tarball, args.out)} emoji to {args.out}")
    return 0


def cmd_anomaly(args: argparse.Namespace) -> int:
    from training.anomaly import METHODS, anomaly_scores, auroc
    from training.data import load_data
    from training.evaluate import checkpoint_data, load_for_batches

    _check_limit(args.limit)
    model = load_for_batches(args.checkpoint, pick_device(args.device), likelihood=True)
    inside = checkpoint_data(model, args.data_dir)[1].images
    outside = load_data(args.ood, args.ood_data_dir, model.config.image_shape)[1].images
    if args.limit:
        inside, outside = inside[: args.limit], outside[: args.limit]
    in_name = model.checkpoint_config["dataset"]["name"]
    results = {"in": in_name, "out": args.ood, "in_images": len(inside), "out_images": len(outside), "methods": {}}
    all_in, all_out = anomaly_scores(model, inside), anomaly_scores(model, outside)
    for method in METHODS:
        scores_in, scores_out = all_in[method], all_out[method]
        results["methods"][method] = {
            "auroc": auroc(scores_in, scores_out),
            "mean_in": float(scores_in.mean()),
            "mean_out": float(scores_out.mean()),
        }
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(
            f"{args.checkpoint}: {in_name} test ({len(inside)}) as normal, "
            f"{args.ood} test ({len(outside)}) as anomalies"
        )
        for method, r in results["methods"].items():
            print(
                f"{method:12s} AUROC {r['auroc']:.4f}   mean score {r['mean_in']:.1f} (normal) vs "
                f"{r['mean_out']:.1f} (anomalies)"
            )
    return 0


def _output_path(flag: str, value: str | None, suffix: str | None = None) -> Path | None:
    """An output file's path, checked before any work: its folder exists, and its suffix."""
    if value is None:
        return None
    path = Path(value)
    if not path.parent.is_dir():
        raise ValueError(f"{flag} {value}: the folder {path.parent} does not exist")
    if path.is_dir():
        raise ValueError(f"{flag} {value}: is a folder; give a file name")
    if suffix and path.suffix.lower() != suffix:
        raise ValueError(f"{flag} {value}: must end in {suffix}")
    return path


def cmd_score(args: argparse.Namespace) -> int:
    from training.evaluate import load_for_batches
    from training.scoring import MAX_SHEET, atlas_scores, collect_files, contact_sheet, score_files, write_csv

    if args.top < 1:
        raise ValueError("--top must be at least 1")
    if args.sheet and args.top > MAX_SHEET:
        raise ValueError(
            f"--sheet shows at most {MAX_SHEET} images; ask for fewer with --top (all of them go to --csv)"
        )
    csv_path, sheet_path = _output_path("--csv", args.csv, ".csv"), _output_path("--sheet", args.sheet, ".png")
    model = load_for_batches(args.checkpoint, pick_device(args.device), likelihood=True)
    if model.likelihood_decoder and not args.json:
        print(
            f"{args.checkpoint} is a sharpened decoder: scored with its parent's ({model.likelihood_decoder}), the "
            "calibrated likelihood"
        )
    files = collect_files(args.paths)
    test_scores = atlas_scores(args.checkpoint, args.method)
    started = time.perf_counter()
    scored = score_files(model, files, args.method, test_scores, progress=not (args.quiet or args.json))
    seconds = time.perf_counter() - started
    ranked, unreadable = scored.ranked, scored.unreadable
    if not ranked:  # nothing to rank: the reason is the error
        raise DataError(
            unreadable[0][1]
            if len(unreadable) == 1
            else f"none of the {len(unreadable)} files could be scored; the first: {unreadable[0][1]}"
        )
    if csv_path:
        write_csv(csv_path, ranked)
    if sheet_path:
        contact_sheet(model, ranked[: args.top]).save(sheet_path)
    # files that could not be read are named after the ranking, and make the exit status 1
    status = EXIT_PARTIAL if unreadable else 0
    if args.json:
        print(
            json.dumps(
                {
                    "checkpoint": args.checkpoint,
                    "method": args.method,
                    "likelihood_decoder": model.likelihood_decoder,
                    "images": len(ranked),
                    "seconds": seconds,
                    "atlas_scores": test_scores is not None,
                    "ranked": [
                        {
                            "file": str(r.path),
                            "score_nats": r.score,
                            "neg_elbo_nats": r.neg_elbo,
                            "neg_elbo_minus_complexity_nats": r.complexity_corrected,
                            "test_set_below_percent": r.percentile,
                            "blank": r.blank,
                        }
                        for r in ranked
                    ],
                    "unreadable": [{"file": str(path), "error": why} for path, why in unreadable],
                },
                indent=2,
            )
        )
        _report_unreadable(unreadable, len(files))
        return status
    formula = "-ELBO - complexity" if args.method == "complexity" else "-ELBO"
    print(
        f"{args.checkpoint}: {len(ranked)} images scored in {seconds:.1f} s; score = {formula} (nats), "
        "higher = more anomalous"
    )
    print(f"{'rank':>4}  {'score':>8}  {'test images below':>17}  file")
    for rank, r in enumerate(ranked[: args.top], 1):
        below = "" if r.percentile is None else f"{r.percentile:.1f}%"
        print(f"{rank:>4}  {r.score:8.1f}  {below:>17}  {r.path}{'  (blank)' if r.blank else ''}")
    if len(ranked) > args.top:
        print(f"({len(ranked) - args.top} more{'' if csv_path else '; --csv FILE writes them all'})")
    if test_scores is None:
        print(f"(no test-set scores in {args.checkpoint}: `python -m training atlas {args.checkpoint}` adds them)")
    for flag, path in (("scores", csv_path), ("sheet", sheet_path)):
        if path:
            print(f"wrote {path} ({flag})")
    _report_unreadable(unreadable, len(files))
    return status


def _report_unreadable(unreadable: list[tuple[Path, str]], total: int) -> None:
    """The files score could not read, each with its reason, on stderr after the ranking."""
    if unreadable:
        sys.stdout.flush()
        sys.stderr.write(
            f"{len(unreadable)} of {total} files could not be scored and are not ranked:\n"
            + "".join(f"  {why}\n" for _, why in unreadable)
        )


# flags and arguments that name files or folders
PATH_ARGUMENTS = ("out", "cache", "checkpoint", "data_dir", "ood_data_dir", "csv", "sheet", "paths")


def _expand_home(args: argparse.Namespace) -> None:
    """~ in paths the shell left as typed (`--out=~/runs/x`: bash expands ~ only at a word's
    start), so that no folder named "~" appears in the working directory."""
    for name in PATH_ARGUMENTS:
        value = getattr(args, name, None)
        if isinstance(value, str):
            setattr(args, name, os.path.expanduser(value))
        elif isinstance(value, list):
            setattr(args, name, [os.path.expanduser(v) for v in value])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _expand_home(args)
    command = {
        "train": cmd_train,
        "sharpen": cmd_sharpen,
        "evaluate": cmd_evaluate,
        "atlas": cmd_atlas,
        "anomaly": cmd_anomaly,
        "patches": cmd_patches,
        "emoji": cmd_emoji,
        "sampler": cmd_sampler,
        "score": cmd_score,
    }[args.command]
    try:
        return command(args)
    except TrainingInterrupted as e:
        print(str(e), file=sys.stderr)
        return e.exit_code
    except (DataError, CheckpointError, TrainingError, ValueError) as e:
        if args.debug:
            raise
        if not (isinstance(e, TrainingError) and e.every_process and os.environ.get("RANK", "0") != "0"):
            sys.stderr.write(f"error: {e}\n")  # one write: a torchrun's processes share the terminal
        return EXIT_USER_ERROR
    except torch.OutOfMemoryError:  # evaluate, atlas, anomaly, score (train says more, above)
        if args.debug:
            raise
        sys.stderr.write("error: The GPU ran out of memory; free it of other programs or pass --device cpu.\n")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
