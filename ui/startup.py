"""The server's start, before the first visitor: `streamlit run app.py` imports app.py, and with
it the page's modules (torch among them), then serves the page as an st.App whose start
(warm_start) imports what Streamlit itself imports on a page's first run and sets TCP_NODELAY
on the listening socket (ui/sockets.py). `make app` (serve.py) does the same and more."""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import streamlit as st

from ui.sockets import send_without_delay

# What Streamlit imports on a page's first run rather than at start: a component's data goes
# through pandas and pyarrow, images through PIL's plugins, and the page's emoji icon through
# streamlit.emojis (its import compiles one large regular expression: ~0.2 s).
STREAMLIT_FIRST_RUN = (
    "pandas",
    "pyarrow",
    "pyarrow.ipc",
    "cloudpickle",
    "PIL.Image",
    "PIL.PngImagePlugin",
    "streamlit.emojis",
)


class NoRuntimeYet(logging.Filter):
    """Drops Streamlit's "No runtime found" warning: the page's modules define st.cache_data
    functions as they are imported, which the server does before its runtime exists, and
    Streamlit warns once per function; true and harmless (the runtime is there when a page
    calls them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No runtime found" not in record.getMessage()


def hush_no_runtime_warnings() -> None:
    """NoRuntimeYet on the logger of st.cache_data's warnings, once."""
    caching = logging.getLogger("streamlit.runtime.caching.cache_data_api")
    if not any(isinstance(f, NoRuntimeYet) for f in caching.filters):
        caching.addFilter(NoRuntimeYet())


def import_first_run_modules() -> None:
    """STREAMLIT_FIRST_RUN imported now, so that no visitor's first run waits for them."""
    for module in STREAMLIT_FIRST_RUN:
        importlib.import_module(module)


@asynccontextmanager
async def warm_start(app: st.App) -> AsyncIterator[None]:
    """st.App's lifespan: STREAMLIT_FIRST_RUN imported and TCP_NODELAY set before the server
    answers."""
    import_first_run_modules()
    send_without_delay()
    yield
