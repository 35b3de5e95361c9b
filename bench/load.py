"""Load: N simultaneous browser sessions (default 30) against one local `streamlit run app.py`,
each dragging latent sliders for S seconds (default 60), in R rounds (default 2).

Each session, in its own browser context (its own Streamlit session), loops: drag a random
slider (decoded live in the browser), wait until the server has the released latent (it shows
in the URL), then one arrow-key step, timed until the image changes; every third time it also
switches to another view, and in the anomaly view uploads three images and waits for their
ranking. Reported: errors
(page errors, exceptions shown on the page, waits that timed out), the release -> server and
key step -> image latencies under load (p50 / p95), the CPU time the server used in each round
(the browsers share the machine with it), and the server's resident memory before,
at the peak of, and after each round (sessions are closed, and the server is started with
--server.disconnectedSessionTTL 5 so it may free them within seconds rather than the default
2 minutes). Memory is also read after one session alone has run every view (before the
rounds): "bounded" means that after each round it is back within 20% of that. The browsers run
at --nice 10: they stand for the class's own machines, not for load on the server's.

    python bench/load.py [--sessions 30] [--seconds 60] [--rounds 2] [--nice 10]

Writes bench/results/load.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from playwright.async_api import TimeoutError as PlaywrightTimeout
from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import cpu_cores, write_report  # noqa: E402
from tests.browser_support import (  # noqa: E402
    CANVAS_HASH_JS,
    CHROMIUM,
    CHROMIUM_ARGS,
    LATENT_VALUES_JS,
    LIVE_READY_JS,
    free_port,
    start_server,
)

# whether the link's z (3 decimals) is the latent Z the browser's controls hold
URL_HAS_JS = """z => {
    const link = new URLSearchParams(location.search).get('z');
    const v = link ? link.split(',').map(Number) : [];
    return v.length === z.length && v.every((x, i) => Math.abs(x - z[i]) < 5e-4);
}"""
# Waits poll on a timer, not on animation frames: a page polled every frame draws every frame,
# and thirty of them drawing a WebGL map at 60 frames/s would be the harness's load, not the page's.
POLL_MS = 100
KEY_POLL_MS = 20  # the key step's latency is the measure: a finer grain


def rss_mb(pid: int) -> float:
    """Resident memory of a process, MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, s (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50_ms": None, "p95_ms": None, "n": 0}
    return {"p50_ms": float(np.percentile(values, 50)), "p95_ms": float(np.percentile(values, 95)), "n": len(values)}


async def drag_and_step(page: object, rng: random.Random, record: dict) -> None:
    """Drag a random slider, wait for the server to have the latent, then time one key step."""
    name = f"z{rng.randint(1, 8)}"
    slider = page.get_by_role("slider", name=name, exact=True).first  # .first: a remount briefly shows two
    await slider.scroll_into_view_if_needed()  # a view switch scrolls the page: the mouse must hit it
    box = await slider.bounding_box()
    y = box["y"] + box["height"] / 2
    a, b = rng.uniform(0.1, 0.45), rng.uniform(0.55, 0.9)
    a, b = (a, b) if rng.random() < 0.5 else (b, a)
    before = await page.evaluate(LATENT_VALUES_JS)
    await page.mouse.move(box["x"] + a * box["width"], y)
    await page.mouse.down()
    for step in range(1, 13):
        await page.mouse.move(box["x"] + (a + (b - a) * step / 12) * box["width"], y)
    await page.mouse.up()
    released = time.perf_counter()
    z = await page.evaluate(LATENT_VALUES_JS)
    if z == before:  # the pointer missed the slider (the page moved under it): not the server's
        record["missed_drags"] += 1
    else:
        try:  # until the URL holds the released latent: the server has run with it
            await page.wait_for_function(URL_HAS_JS, arg=z, timeout=30_000, polling=POLL_MS)
            record["release_ms"].append((time.perf_counter() - released) * 1000)
        except PlaywrightTimeout:  # counted, reported
            record["timeouts"]["release"] += 1
    await slider.focus()
    image_before = await page.evaluate(CANVAS_HASH_JS)
    pressed = time.perf_counter()
    await page.keyboard.press("ArrowRight" if b < 0.5 else "ArrowLeft")
    try:
        await page.wait_for_function(
            f"h => ({CANVAS_HASH_JS})() !== h", arg=image_before, timeout=10_000, polling=KEY_POLL_MS
        )
        record["key_ms"].append((time.perf_counter() - pressed) * 1000)
    except PlaywrightTimeout:  # counted, reported
        record["timeouts"]["key step"] += 1
    record["drags"] += 1


VIEWS = ("Interpolate", "Traverse", "Anomaly", "Training")


def write_uploads(folder: Path) -> list[str]:
    """Three PNGs for the anomaly view: a stroke, a ring, noise."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    shapes = {
        "stroke.png": lambda d: d.line([(60, 20), (70, 180)], fill=0, width=18),
        "ring.png": lambda d: d.ellipse([40, 40, 160, 160], outline=0, width=16),
    }
    paths = []
    for name, draw in shapes.items():
        image = Image.new("L", (200, 200), 255)
        draw(ImageDraw.Draw(image))
        image.save(folder / name)
        paths.append(str(folder / name))
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(folder / "noise.png")
    return [*paths, str(folder / "noise.png")]


async def visit_view(page: object, view: str, uploads: list[str], record: dict) -> None:
    """Switch to VIEW; in the anomaly view, upload UPLOADS and wait for their ranking."""
    await page.get_by_role("radio", name=view).click()
    if view == "Anomaly":
        await page.get_by_text("upload", exact=True).click()
        await page.locator("input[type=file]").set_input_files(uploads)
        await page.locator("[data-testid=stDataFrame]").wait_for(timeout=60_000)
        record["uploads"] += len(uploads)
    record["views"] += 1


async def session(
    browser: object, url: str, seconds: float, k: int, record: dict, uploads: list[str], every_view: bool = False
) -> None:
    context = await browser.new_context(viewport={"width": 1400, "height": 1100})
    context.set_default_timeout(60_000)
    page = await context.new_page()
    page.on("pageerror", lambda error: record["errors"].append(f"session {k}: {error}"))
    rng = random.Random(k)
    try:
        started = time.perf_counter()
        await page.goto(url)
        await page.wait_for_function(LIVE_READY_JS, timeout=300_000, polling=POLL_MS)
        record["ready_s"].append(time.perf_counter() - started)
        for view in VIEWS if every_view else ():
            await visit_view(page, view, uploads, record)
        deadline = time.monotonic() + seconds
        turn = 0
        while time.monotonic() < deadline:
            try:
                await drag_and_step(page, rng, record)
                turn += 1
                if turn % 3 == 0:
                    await visit_view(page, rng.choice(VIEWS), uploads, record)
            except PlaywrightTimeout as error:  # the harness waited too long on a saturated machine: counted
                record["timeouts"][str(error).splitlines()[0][:80]] += 1
            await asyncio.sleep(rng.uniform(0.2, 0.6))
        record["exceptions_shown"] += await page.locator("[data-testid=stException]").count()
    except Exception as error:  # noqa: BLE001 - a session that fails is an error of the run, not of the script
        record["errors"].append(f"session {k}: {type(error).__name__}: {str(error).splitlines()[0]}")
    finally:
        await context.close()


async def sample_memory(pids: list[int], samples: list[float], stop: asyncio.Event) -> None:
    """Append the processes' summed resident memory, MB, to SAMPLES every 0.5 s until STOP."""
    while not stop.is_set():
        samples.append(sum(rss_mb(pid) for pid in pids))
        await asyncio.sleep(0.5)


def niced_chromium(niceness: int) -> str:
    """A chromium that runs at NICENESS: the browsers stand for the class's own machines, so the
    server, at normal priority, does not wait its turn behind thirty renderers for a core."""
    if niceness == 0:
        return CHROMIUM
    wrapper = Path(tempfile.mkdtemp()) / "chromium"
    wrapper.write_text(f'#!/bin/sh\nexec nice -n {niceness} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def empty_record() -> dict:
    """What a round's sessions add to as they run."""
    return {
        "errors": [],
        "ready_s": [],
        "release_ms": [],
        "key_ms": [],
        "timeouts": collections.Counter(),
        "missed_drags": 0,
        "drags": 0,
        "views": 0,
        "uploads": 0,
        "exceptions_shown": 0,
    }


async def load_round(
    browser: object, url: str, args: argparse.Namespace, r: int, server_pid: int, uploads: list[str]
) -> dict:
    """Round R: ARGS.sessions sessions at once for ARGS.seconds, the server's memory sampled
    throughout; what they measured, the server's CPU seconds and its memory (MB) before, at
    the peak and once the sessions have expired."""
    before = rss_mb(server_pid)
    record = empty_record()
    samples: list[float] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_memory([server_pid], samples, stop))
    started, cpu_before = time.perf_counter(), cpu_seconds(server_pid)
    await asyncio.gather(
        *(session(browser, url, args.seconds, k + 100 * r + 1, record, uploads) for k in range(args.sessions))
    )
    wall, server_cpu = time.perf_counter() - started, cpu_seconds(server_pid) - cpu_before
    stop.set()
    await sampler
    await asyncio.sleep(args.settle)  # the TTL passes and the server frees the sessions
    return {
        "round": r + 1,
        "wall_s": wall,
        "server_cpu_s": server_cpu,
        "drags": record["drags"],
        "views": record["views"],
        "uploads": record["uploads"],
        "errors": record["errors"],
        "timeouts": dict(record["timeouts"]),
        "missed_drags": record["missed_drags"],
        "exceptions_shown": record["exceptions_shown"],
        "ready_s": {
            "max": max(record["ready_s"], default=None),
            "median": float(np.median(record["ready_s"])) if record["ready_s"] else None,
        },
        "release_to_server": percentiles(record["release_ms"]),
        "key_step_to_image": percentiles(record["key_ms"]),
        "rss_mb": {"before": before, "peak": max(samples, default=before), "after": rss_mb(server_pid)},
    }


async def run(args: argparse.Namespace) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(port, options=("--server.disconnectedSessionTTL", "5"))
    rounds = []
    uploads = write_uploads(Path(tempfile.mkdtemp()) / "uploads")
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=niced_chromium(args.nice), args=CHROMIUM_ARGS)
            version = browser.version
            # one session alone through every view: the level memory must come back to
            first = empty_record()
            await session(browser, url, 5, 0, first, uploads, every_view=True)
            await asyncio.sleep(args.settle)
            after_first = rss_mb(server.pid)
            for r in range(args.rounds):
                rounds.append(await load_round(browser, url, args, r, server.pid, uploads))
                print(json.dumps(rounds[-1]), flush=True)
            await browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)
    cores = cpu_cores()
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {cores} cores, headless chromium {version}",
        "sessions": args.sessions,
        "browser_niceness": args.nice,
        "seconds": args.seconds,
        "first_session": {"errors": first["errors"], "timeouts": dict(first["timeouts"]), "rss_mb_after": after_first},
        "rounds": rounds,
    }


def timeouts(counts: dict[str, int]) -> str:
    """'3 (release 2, key step 1)': the waits that ran out, by which."""
    if not counts:
        return "0"
    return f"{sum(counts.values())} ({', '.join(f'{name} {n}' for name, n in counts.items())})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--nice", type=int, default=10, help="the browsers' niceness (0: the server's priority)")
    parser.add_argument(
        "--settle", type=float, default=15, help="seconds to wait after a round before measuring memory"
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    result = asyncio.run(run(args))
    lines = [
        f"Load, {result['date']}, {result['machine']}: {args.sessions} sessions × {args.seconds:.0f} s, "
        f"{args.rounds} rounds, browsers at nice {args.nice}; server RSS after one session alone through every view: "
        f"{result['first_session']['rss_mb_after']:.0f} MB",
        "",
        "| round | drags (missed) | views (uploads) | errors | timeouts | page ready (median / max) | "
        "release → server p50 / p95 | key step → image p50 / p95 | server CPU (of the round's wall) | "
        "server RSS before / peak / after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rounds"]:
        ms = lambda p: "n/a" if p["n"] == 0 else f"{p['p50_ms']:.0f} / {p['p95_ms']:.0f} ms"  # noqa: E731
        ready = r["ready_s"]
        lines.append(
            f"| {r['round']} | {r['drags']} ({r['missed_drags']}) | {r['views']} ({r['uploads']}) | "
            f"{len(r['errors']) + r['exceptions_shown']} | {timeouts(r['timeouts'])} | "
            f"{ready['median']:.1f} / {ready['max']:.1f} s | {ms(r['release_to_server'])} | "
            f"{ms(r['key_step_to_image'])} | {r['server_cpu_s']:.0f} s of {r['wall_s']:.0f} s | "
            f"{r['rss_mb']['before']:.0f} / {r['rss_mb']['peak']:.0f} / "
            f"{r['rss_mb']['after']:.0f} MB |"
        )
    write_report(args.out, "load", result, lines)


if __name__ == "__main__":
    main()
