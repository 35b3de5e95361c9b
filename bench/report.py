"""What every benchmark writes: its figures as JSON and its table as markdown, side by side
in bench/results/ (bench/summary.py gathers them), and the table on stdout."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


def write_report(out: str | Path, name: str, result: dict, lines: list[str]) -> None:
    """OUT/NAME.json from RESULT, OUT/NAME.md from the markdown LINES, which are also printed."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def cpu_cores() -> str:
    """The cores this process may use, as `nproc` counts them (it honours OMP_NUM_THREADS)."""
    return subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
