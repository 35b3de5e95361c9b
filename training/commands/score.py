"""python -m training score: your own images ranked by anomaly score."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from training.commands.common import EXIT_PARTIAL, add_debug, add_device, output_path
from training.data import DataError
from training.evaluate import load_for_batches
from training.loop import pick_device
from training.scoring import MAX_SHEET, ScoredFiles, atlas_scores, collect_files, contact_sheet, score_files, write_csv


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score",
        help="rank your own images by anomaly score, most anomalous first, each placed among the checkpoint's test set",
    )
    parser.set_defaults(handler=run)
    parser.add_argument("checkpoint")
    parser.add_argument("paths", nargs="+", help="image files, or folders searched for .png and .jpg files")
    parser.add_argument(
        "--method",
        choices=("complexity", "elbo"),
        default="complexity",
        help="complexity (default, the page's score): -ELBO minus the image's complexity, which "
        "stops simple images passing as normal; elbo: the plain -ELBO",
    )
    parser.add_argument("--top", type=int, default=10, help="rows printed, and images on --sheet (default 10)")
    parser.add_argument("--csv", help="write every image's scores and rank to this CSV file")
    parser.add_argument("--sheet", help="write a PNG of the --top most anomalous images beside their reconstructions")
    add_device(parser)
    parser.add_argument("--json", action="store_true", help="print every image's scores as JSON instead of a table")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_debug(parser)


def run(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise ValueError("--top must be at least 1")
    if args.sheet and args.top > MAX_SHEET:
        raise ValueError(
            f"--sheet shows at most {MAX_SHEET} images; ask for fewer with --top (all of them go to --csv)"
        )
    csv_path, sheet_path = output_path("--csv", args.csv, ".csv"), output_path("--sheet", args.sheet, ".png")
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
    if not scored.ranked:  # nothing to rank: the reason is the error
        unreadable = scored.unreadable
        raise DataError(
            unreadable[0][1]
            if len(unreadable) == 1
            else f"none of the {len(unreadable)} files could be scored; the first: {unreadable[0][1]}"
        )
    if csv_path:
        write_csv(csv_path, scored.ranked)
    if sheet_path:
        contact_sheet(model, scored.ranked[: args.top]).save(sheet_path)
    if args.json:
        print(
            json.dumps(json_report(args, model.likelihood_decoder, scored, seconds, test_scores is not None), indent=2)
        )
    else:
        print_ranking(args, scored, seconds, test_scores is not None, (csv_path, sheet_path))
    report_unreadable(scored.unreadable, len(files))
    # files that could not be read are named after the ranking, and make the exit status 1
    return EXIT_PARTIAL if scored.unreadable else 0


def json_report(
    args: argparse.Namespace, likelihood: str | None, scored: ScoredFiles, seconds: float, placed: bool
) -> dict:
    """--json's report: every image's scores, and the files that could not be read."""
    return {
        "checkpoint": args.checkpoint,
        "method": args.method,
        "likelihood_decoder": likelihood,
        "images": len(scored.ranked),
        "seconds": seconds,
        "atlas_scores": placed,
        "ranked": [
            {
                "file": str(r.path),
                "score_nats": r.score,
                "neg_elbo_nats": r.neg_elbo,
                "neg_elbo_minus_complexity_nats": r.complexity_corrected,
                "test_set_below_percent": r.percentile,
                "blank": r.blank,
            }
            for r in scored.ranked
        ],
        "unreadable": [{"file": str(path), "error": why} for path, why in scored.unreadable],
    }


def print_ranking(
    args: argparse.Namespace,
    scored: ScoredFiles,
    seconds: float,
    placed: bool,
    written: tuple[Path | None, Path | None],
) -> None:
    """The table: the --top most anomalous, and what was written (WRITTEN: the CSV, the sheet)."""
    ranked, (csv_path, sheet_path) = scored.ranked, written
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
    if not placed:
        print(f"(no test-set scores in {args.checkpoint}: `python -m training atlas {args.checkpoint}` adds them)")
    for what, path in (("scores", csv_path), ("sheet", sheet_path)):
        if path:
            print(f"wrote {path} ({what})")


def report_unreadable(unreadable: list[tuple[Path, str]], total: int) -> None:
    """The files score could not read, each with its reason, on stderr after the ranking."""
    if unreadable:
        sys.stdout.flush()
        sys.stderr.write(
            f"{len(unreadable)} of {total} files could not be scored and are not ranked:\n"
            + "".join(f"  {why}\n" for _, why in unreadable)
        )
