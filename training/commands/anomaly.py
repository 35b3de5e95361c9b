"""python -m training anomaly: how well the anomaly scores tell two data sets apart."""

from __future__ import annotations

import argparse
import json

from training.anomaly import METHODS, anomaly_scores, auroc
from training.commands.common import add_data_dir, add_debug, add_device, check_limit
from training.data import DATASET_NAMES, load_data
from training.evaluate import checkpoint_data, load_for_batches
from training.loop import pick_device


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "anomaly", help="how well anomaly scores tell the checkpoint's test set from another data set's (AUROC)"
    )
    parser.set_defaults(handler=run)
    parser.add_argument("checkpoint")
    parser.add_argument("--ood", required=True, choices=DATASET_NAMES, help="the other (out-of-distribution) data set")
    parser.add_argument("--ood-data-dir", help="where the other data set is (default: as for --data-dir)")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N test images of each (0: all)")
    add_device(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_data_dir(parser)
    add_debug(parser)


def run(args: argparse.Namespace) -> int:
    check_limit(args.limit)
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
        return 0
    print(f"{args.checkpoint}: {in_name} test ({len(inside)}) as normal, {args.ood} test ({len(outside)}) as anomalies")
    for method, r in results["methods"].items():
        print(
            f"{method:12s} AUROC {r['auroc']:.4f}   mean score {r['mean_in']:.1f} (normal) vs "
            f"{r['mean_out']:.1f} (anomalies)"
        )
    return 0
