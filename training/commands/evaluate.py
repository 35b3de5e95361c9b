"""python -m training evaluate: a checkpoint's test-set figures."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from training.checkpoint import METRICS, atomic_write_json, read_metrics
from training.commands.common import add_data_dir, add_debug, add_device, check_limit
from training.evaluate import checkpoint_data, importance_sampled_nll, load_for_batches, test_metrics
from training.loop import pick_device


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="test-set metrics of a checkpoint, with importance-sampled NLL")
    parser.set_defaults(handler=run)
    parser.add_argument("checkpoint")
    parser.add_argument("--iw-samples", type=int, default=100, help="importance samples per image (K)")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N test images (0: all)")
    add_device(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--write", action="store_true", help="also merge the figures into CHECKPOINT/metrics.json")
    add_data_dir(parser)
    add_debug(parser)


def run(args: argparse.Namespace) -> int:
    if args.iw_samples < 1:
        raise ValueError("--iw-samples must be at least 1")
    check_limit(args.limit)
    model = load_for_batches(args.checkpoint, pick_device(args.device))
    loss = model.checkpoint_config["train"]["loss"]
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
        atomic_write_json(Path(args.checkpoint) / METRICS, {**read_metrics(args.checkpoint), **metrics})
    if args.json:
        print(json.dumps(metrics, indent=2, sort_keys=True))
        return 0
    for key in ("neg_elbo_nats", "reconstruction_nats", "kl_nats", "iw_nll_nats", "mse_per_pixel", "knn5_accuracy"):
        print(f"{key:22s} {metrics[key]:.5f}")
    print(f"{'active_units':22s} {metrics['active_units']} of {model.config.latent_dim}")
    print(f"({len(test_images)} test images, K={args.iw_samples}, {metrics['evaluate_seconds']:.1f} s)")
    return 0
