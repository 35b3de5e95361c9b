"""`make app`: `streamlit run app.py [streamlit options]`, with the modules the page imports
(app.py and ui/, torch among them) and those Streamlit imports on a first run imported before
the server answers, so the first visitor's page does not wait for them.

    python serve.py [--server.port 8501] [--server.address 0.0.0.0] ...
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"
UI = APP.parent / "ui"  # the page's modules
# What Streamlit imports on a page's first run rather than at start: a component's data goes
# through pandas and pyarrow, images through PIL's plugins.
STREAMLIT_FIRST_RUN = ("pandas", "pyarrow", "pyarrow.ipc", "cloudpickle", "PIL.Image", "PIL.PngImagePlugin")


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


def main() -> None:
    sys.path.insert(0, str(APP.parent))  # where `streamlit run` puts it: app.py's own imports resolve
    for module in (*page_modules(), *STREAMLIT_FIRST_RUN):
        importlib.import_module(module)
    from streamlit.web import cli  # noqa: PLC0415 - after the page's imports, like `streamlit run`

    sys.argv = ["streamlit", "run", str(APP), *sys.argv[1:]]
    sys.exit(cli.main())


if __name__ == "__main__":
    main()
