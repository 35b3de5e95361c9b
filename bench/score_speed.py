"""Screening your own images end to end: the MNIST test set written out as 10,000 PNG files and
ranked by `python -m training score`'s functions (training/scoring.py: each file decoded,
prepared by MNIST's recipe, scored, ranked). Reports images/s, decoding included, and whether
the files land where the atlas has the same images (scored from the raw test set): the
correlation of the two scores, the overlap of their 20 most anomalous, and the share of files
above the atlas's 99th and 90th percentiles (1% and 10% if the two agree).

    python bench/score_speed.py checkpoints/mnist-z8 --data-dir ../shared/data/mnist

Writes bench/results/score_speed.json and .md.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import cpu_cores, write_report  # noqa: E402
from training.data import load_dataset  # noqa: E402
from training.evaluate import load_for_batches  # noqa: E402
from training.scoring import atlas_scores, collect_files, score_files  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="an MNIST checkpoint with an atlas (its test-set scores)")
    parser.add_argument("--data-dir")
    parser.add_argument("--limit", type=int, default=0, help="only the first N test images (0: all)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args(argv)

    model = load_for_batches(args.checkpoint)
    reference = atlas_scores(args.checkpoint)
    if reference is None:
        raise SystemExit(f"{args.checkpoint} has no atlas scores: run `python -m training atlas {args.checkpoint}`")
    images = load_dataset("mnist", args.data_dir)[1].images
    count = min(args.limit, len(images)) if args.limit else len(images)
    with tempfile.TemporaryDirectory() as folder:
        for i in range(count):
            Image.fromarray((images[i, 0] * 255).round().byte().numpy()).save(Path(folder) / f"{i:05d}.png")
        started = time.perf_counter()
        ranked = score_files(model, collect_files([folder]), test_scores=reference).ranked
        seconds = time.perf_counter() - started
    by_index = np.empty(count, np.float32)
    for r in ranked:
        by_index[int(r.path.stem)] = r.score
    atlas = reference[:count]
    percentiles = np.array([r.percentile for r in ranked])
    top = 20
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {cpu_cores()} cores, {torch.get_num_threads()} threads, no GPU",
        "checkpoint": args.checkpoint,
        "files": count,
        "seconds": seconds,
        "images_per_second": count / seconds,
        "correlation_with_atlas": float(np.corrcoef(by_index, atlas)[0, 1]),
        "top20_overlap": len(set(np.argsort(-by_index)[:top]) & set(np.argsort(-atlas)[:top])),
        "share_above_99th": float((percentiles > 99).mean()),
        "share_above_90th": float((percentiles > 90).mean()),
    }
    lines = [
        f"Screening PNG files, {result['date']}, {result['machine']}, {args.checkpoint}",
        "",
        "| files | seconds (decoding included) | images/s | correlation with the atlas's scores | "
        "same 20 most anomalous | above the 99th / 90th percentile |",
        "|---|---|---|---|---|---|",
        f"| {count:,} | {seconds:.1f} | {result['images_per_second']:,.0f} | "
        f"{result['correlation_with_atlas']:.4f} | {result['top20_overlap']} of {top} | "
        f"{result['share_above_99th']:.2%} / {result['share_above_90th']:.1%} |",
    ]
    write_report(args.out, "score_speed", result, lines)


if __name__ == "__main__":
    main()
