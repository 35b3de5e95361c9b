"""replicas.py (`make app-replicas`): copies of the page behind nginx, each browser kept on one."""

import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bench import load_protocol
from tests.browser_support import ROOT, free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
pytestmark = pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx is not installed (make test installs it)")


def health(base: str, cookie: str = "") -> tuple[str, str]:
    """(the replica that answered, the sticky cookie set) for one health check."""
    request = urllib.request.Request(base + "/_stcore/health", headers={"Cookie": cookie} if cookie else {})
    with urllib.request.urlopen(request, timeout=30) as response:
        cookies = [c.split(";")[0] for c in response.headers.get_all("Set-Cookie") if c.startswith("lx_replica=")]
        return response.headers["X-Replica"], cookies[0]


def test_two_replicas_keep_each_browser_on_one_and_serve_sessions_without_errors(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "replicas.py", "--replicas", "2", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                health(base)
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None, "the replicas did not start"
                time.sleep(0.5)
        # browsers without the cookie are spread over both replicas; one with it stays on its own
        assert len({health(base)[0] for _ in range(20)}) == 2
        replica, cookie = health(base)
        assert {health(base, cookie)[0] for _ in range(5)} == {replica}
        # whole sessions through the proxy: uploads and reruns reach the replica holding the session
        result = load_protocol.main(
            ["--url", base, "--levels", "4", "--seconds", "10", "--think", "1", "--settle", "1", "--out", str(tmp_path)]
        )
        level = result["levels"][0]
        assert level["errors"] == 0 and level["completed"] == 4, level["error_examples"]
        assert sum(level["sessions_per_replica"].values()) == 4
        assert level["bundles_fetched"] >= 4 * 3  # from the replica that published them (the cookie)
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C stops nginx and the replicas (killed after 15 s)
        process.wait(timeout=120)
    with pytest.raises(OSError):
        health(base)
