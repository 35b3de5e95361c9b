"""What a first visit downloads: every HTTP response (its bytes on the wire) and every websocket
frame the server sends (Streamlit's messages, the model's bundles among them), counted by
chromium's DevTools protocol from opening the page until its map is drawn and the network has
been quiet for 2 s; the largest responses named.

    python bench/page_weight.py                  # this checkout's page
    python bench/page_weight.py --root ../other  # another checkout's (a worktree of another commit)

Writes bench/results/page_weight.json and .md (with --name NAME: page_weight_NAME).
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import write_report  # noqa: E402
from tests.browser_support import CHROMIUM, CHROMIUM_ARGS, LIVE_READY_JS, free_port  # noqa: E402

QUIET_S = 2.0
# the map is drawn: the new page's own hook, or the plotly chart an older page drew
DRAWN_JS = """() => (window.__latentExplorer && window.__latentExplorer.map && window.__latentExplorer.map.drawnAt)
    || !!document.querySelector('.st-key-atlas_map .js-plotly-plot')"""


def start(root: Path, port: int) -> subprocess.Popen:
    """`python serve.py` of the checkout ROOT on PORT, once its health check answers."""
    command = [sys.executable, str(root / "serve.py"), "--server.port", str(port), "--server.headless", "true"]
    process = subprocess.Popen(command, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the server did not start")


def visit(url: str) -> dict:
    """Bytes received by a fresh browser opening URL: HTTP responses by URL, websocket frames."""
    responses, frames, last = {}, [], [time.monotonic()]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1400, "height": 1200}).new_page()
        cdp = page.context.new_cdp_session(page)
        cdp.send("Network.enable")
        urls = {}
        cdp.on("Network.responseReceived", lambda e: urls.__setitem__(e["requestId"], e["response"]["url"]))

        def finished(event: dict) -> None:
            responses[urls.get(event["requestId"], event["requestId"])] = event["encodedDataLength"]
            last[0] = time.monotonic()

        def frame(event: dict) -> None:
            data = event["response"]["payloadData"]
            frames.append(len(base64.b64decode(data)) if event["response"]["opcode"] == 2 else len(data.encode()))
            last[0] = time.monotonic()

        cdp.on("Network.loadingFinished", finished)
        cdp.on("Network.webSocketFrameReceived", frame)
        page.goto(url)
        page.wait_for_function(LIVE_READY_JS, timeout=120_000)
        page.wait_for_function(DRAWN_JS, timeout=120_000)
        while time.monotonic() - last[0] < QUIET_S:
            page.wait_for_timeout(200)
        browser.close()
    return {"http": responses, "websocket_frames": frames}


def summary(root: Path, seen: dict) -> tuple[dict, list[str]]:
    """(the result, its markdown lines) of what a visit SEEN downloaded from checkout ROOT."""
    http, frames = seen["http"], seen["websocket_frames"]
    git = ["git", "-C", str(root), "rev-parse", "--short", "HEAD"]
    largest = sorted(http.items(), key=lambda item: -item[1])[:8]
    result = {
        "commit": subprocess.run(git, capture_output=True, text=True).stdout.strip(),
        "http_bytes": sum(http.values()),
        "http_responses": len(http),
        "websocket_bytes": sum(frames),
        "websocket_frames": len(frames),
        "largest": [{"url": url.split("/", 3)[-1], "bytes": size} for url, size in largest],
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, Debian chromium",
        "date": time.strftime("%Y-%m-%d"),
    }
    total = (result["http_bytes"] + result["websocket_bytes"]) / 1e6
    lines = [
        f"Page weight of a first visit, commit {result['commit']}, {result['date']}, {result['machine']}",
        "",
        f"HTTP: {result['http_bytes'] / 1e6:.2f} MB in {len(http)} responses (bytes on the wire); "
        f"websocket: {result['websocket_bytes'] / 1e6:.2f} MB in {len(frames)} frames; total {total:.2f} MB",
        "",
        "| largest responses | MB |",
        "|---|---|",
        *[f"| {item['url']} | {item['bytes'] / 1e6:.2f} |" for item in result["largest"]],
    ]
    return result, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose page to weigh")
    parser.add_argument("--name", default="", help="suffix of the result files")
    args = parser.parse_args()
    port = free_port()
    server = start(args.root.resolve(), port)
    try:
        seen = visit(f"http://127.0.0.1:{port}/")
    finally:
        server.terminate()
        server.wait(timeout=15)
    result, lines = summary(args.root, seen)
    write_report(ROOT / "bench" / "results", f"page_weight_{args.name}" if args.name else "page_weight", result, lines)


if __name__ == "__main__":
    main()
