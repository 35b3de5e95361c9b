"""`make app`: `streamlit run app.py [streamlit options]` (app.py's st.App: the page's modules,
torch among them, imported before the server answers, see ui/startup.py), with the memory of a
long-running server kept bounded and those imports frozen out of the garbage collector's way.

    python serve.py [--server.port 8501] [--server.address 0.0.0.0] ...
"""

from __future__ import annotations

import ast
import ctypes
import gc
import importlib
import sys
import threading
import time
from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"
UI = APP.parent / "ui"  # the page's modules
M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)
TIDY_EVERY_S = 10.0
QUIET_CPU_SHARE = 0.02  # of one core over the last TIDY_EVERY_S: a rerun or two, nobody waiting


def imported_modules(source: str) -> list[str]:
    """The top-level modules a script's `import` and `from … import` statements name, in order."""
    modules = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
            modules.append(node.module)
    return modules


def page_modules() -> list[str]:
    """The modules app.py and the page's modules in ui/ import, each once, in order."""
    modules = []
    for path in (APP, *sorted(UI.rglob("*.py"))):
        modules += [m for m in imported_modules(path.read_text()) if m not in modules]
    return modules


def glibc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: no arenas to limit or trim
        return None


def tidy_memory_forever(libc: ctypes.CDLL | None) -> None:
    """When the server has been quiet for TIDY_EVERY_S: collect cyclic garbage (what closed
    sessions leave; scripts no longer collect after each run, see .streamlit/config.toml) and
    hand freed memory back to the system. Never under load, where it would cost every rerun."""
    cpu = time.process_time()
    while True:
        time.sleep(TIDY_EVERY_S)
        used, cpu = time.process_time() - cpu, time.process_time()
        if used < QUIET_CPU_SHARE * TIDY_EVERY_S:
            gc.collect()
            if libc is not None:
                libc.malloc_trim(0)


def keep_memory_bounded() -> None:
    """Every session runs its script in a thread of its own, and glibc gives threads up to 8
    malloc arenas per core, each keeping what was freed in it: two arenas, and a thread that
    collects and trims, bring the server back near its one-session memory after a crowd leaves."""
    libc = glibc()
    if libc is not None:
        libc.mallopt(M_ARENA_MAX, 2)
    threading.Thread(target=tidy_memory_forever, args=(libc,), name="tidy-memory", daemon=True).start()


def main() -> None:
    keep_memory_bounded()
    sys.path.insert(0, str(APP.parent))  # where `streamlit run` puts it: app.py's own imports resolve
    for module in page_modules():
        importlib.import_module(module)
    from ui.startup import import_first_run_modules  # noqa: PLC0415 - the page's package, on that path

    import_first_run_modules()
    # Streamlit runs a full garbage collection after every script run; over torch's, plotly's
    # and pandas' objects that took 43% of the server's time under load. Frozen, the collector
    # skips everything alive now (the imports) and looks only at what the sessions create.
    gc.collect()
    gc.freeze()
    from streamlit.web import cli  # noqa: PLC0415 - after the page's imports, like `streamlit run`

    sys.argv = ["streamlit", "run", str(APP), *sys.argv[1:]]
    sys.exit(cli.main())


if __name__ == "__main__":
    main()
