"""The README's picture of the page: a real `streamlit run app.py` in headless chromium, with
test image #3 encoded into the sliders.

    python docs/screenshot.py            # writes docs/page.png
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser_support import CHROMIUM, CHROMIUM_ARGS, LIVE_READY_JS, free_port, start_server  # noqa: E402


def main() -> None:
    out = ROOT / "docs" / "page.png"
    port = free_port()
    server = start_server(port)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1050})
            page.goto(f"http://127.0.0.1:{port}")
            page.wait_for_function(LIVE_READY_JS, timeout=60_000)
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
            page.get_by_label("Test image #", exact=True).fill("3")
            page.get_by_role("button", name="Encode it").click()
            page.mouse.move(5, 5)  # no tooltip in the picture
            time.sleep(3)  # the rerun, the controls, the star and the pad's preview
            page.screenshot(path=str(out))
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
