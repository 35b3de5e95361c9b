"""One report of every benchmark's latest results: bench/results/summary.json (each
benchmark's JSON under its name) and summary.md (their tables, in the order `make bench` runs
them). Run by `make bench` after the benchmarks themselves.

    python bench/summary.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ORDER = (
    "train_speed",
    "train_speed_cuda",
    "train_speed_cuda_h200",
    "gpu_variants",
    "step_ops",
    "app_latency",
    "load",
    "sample_quality",
    "sample_quality_fashion",
    "atlas_scale",
    "score_speed",
)


def main() -> None:
    present = [name for name in ORDER if (RESULTS / f"{name}.json").is_file()]
    summary = {
        "written": time.strftime("%Y-%m-%d %H:%M"),
        **{name: json.loads((RESULTS / f"{name}.json").read_text()) for name in present},
    }
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    sections = [f"# Benchmarks ({', '.join(present)}), collected {summary['written']}"]
    for name in present:
        sections.append(f"## {name}\n\n" + (RESULTS / f"{name}.md").read_text().strip())
    (RESULTS / "summary.md").write_text("\n\n".join(sections) + "\n")
    print(f"wrote {RESULTS / 'summary.json'} and summary.md ({len(present)} benchmarks)")


if __name__ == "__main__":
    main()
