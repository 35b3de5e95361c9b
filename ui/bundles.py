"""The browser's bundles (a decoder as ONNX, a split's points, a thumbnail sheet: explorer/live.py)
served over HTTP at <base>/bundles/<id>, rather than inside the page's websocket messages.

An id is the SHA-256 of the bundle's body, so a URL's bytes never change: the browser keeps them
for a year (a second visit downloads nothing), and a rerun neither re-hashes nor re-sends
megabytes (Streamlit hashes every message it sends, even one the browser already has).

Bundles are published by the page's run that shows them (publish) and served from memory by
bundle_response, a route of app.py's st.App. The MAX_PUBLISHED last published are kept: the
cached bundles (ui/resources.py) are these same bytes objects, so this costs no copy."""

from __future__ import annotations

import threading
from collections import OrderedDict

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ui.serving import under_base_path

ROUTE = "bundles"
MAX_PUBLISHED = 32  # more than the page's caches hold (ui/resources.py: 8 models, 16 point sets)
IMMUTABLE = "public, max-age=31536000, immutable"

_published: OrderedDict[str, bytes] = OrderedDict()
_lock = threading.Lock()


def publish(bundle: tuple[str, bytes]) -> str:
    """Serve BUNDLE's (id, bytes) at bundle_url() + id from now on; returns the id."""
    bundle_id, data = bundle
    with _lock:
        _published[bundle_id] = data
        _published.move_to_end(bundle_id)
        while len(_published) > MAX_PUBLISHED:
            _published.popitem(last=False)
    return bundle_id


def published(bundle_id: str) -> bytes | None:
    """The bytes served for BUNDLE_ID, or None."""
    with _lock:
        return _published.get(bundle_id)


def bundle_url() -> str:
    """The bundles' URL prefix under the server's base path, e.g. "/bundles/"."""
    return under_base_path(f"{ROUTE}/")


async def bundle_response(request: Request) -> Response:
    """GET <base>/bundles/<id>: the bundle's bytes, uncompressed (gzip would save 8% of a
    sharpened decoder's 4 MB for 0.14 s of the server's CPU on every request), or 404."""
    data = published(request.path_params["bundle_id"])
    if data is None:
        return PlainTextResponse("No such bundle on this server: reload the page.", status_code=404)
    # a Content-Encoding keeps Starlette's GZipMiddleware off it
    headers = {"Cache-Control": IMMUTABLE, "Content-Encoding": "identity"}
    return Response(data, media_type="application/octet-stream", headers=headers)


def bundle_routes() -> list[Route]:
    """The route, at the root and under any base path (the server's option is read per request
    by the page, not when the routes are made)."""
    return [
        Route(f"/{ROUTE}/{{bundle_id}}", bundle_response, methods=["GET"]),
        Route(f"/{{base:path}}/{ROUTE}/{{bundle_id}}", bundle_response, methods=["GET"]),
    ]
