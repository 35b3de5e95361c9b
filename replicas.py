"""`make app-replicas`: several copies of the page behind nginx, each browser kept on one of them.

A Streamlit session lives in one process (its state, its uploads, its websocket), so a proxy in
front of several must send every request of a browser to the same replica. nginx's open-source
build has no sticky-cookie directive; this config makes one: a browser without the `lx_replica`
cookie gets a fresh random key (its first request's id), set as that cookie, and every request
is hashed on the key (`hash … consistent`), so the page, its static files, the websocket and the
uploads all reach one replica. The replicas share a cookie secret, so XSRF tokens hold on each.

    python replicas.py [--replicas 2] [--port 8501] [--address 127.0.0.1] [-- streamlit options]

Ctrl-C stops nginx and every replica. Needs Debian's nginx (`apt-get install nginx-light`).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent
COOKIE = "lx_replica"
NGINX_CONFIG = """worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    client_max_body_size {upload_mb}m;
    # a browser's key: its cookie, else this request's random id (then set as its cookie)
    map $cookie_{cookie} $replica_key {{ "" $request_id; default $cookie_{cookie}; }}
    map $http_upgrade $connection_upgrade {{ default upgrade; "" close; }}
    upstream replicas {{
        hash $replica_key consistent;
{servers}
    }}
    server {{
        listen {address}:{port};
        location / {{
            proxy_pass http://replicas;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 1d;
            proxy_buffering off;
            add_header Set-Cookie "{cookie}=$replica_key; Path=/; SameSite=Lax; HttpOnly" always;
            add_header X-Replica $upstream_addr always;
        }}
    }}
}}
"""


def nginx_config(folder: Path, address: str, port: int, replica_ports: list[int], upload_mb: int) -> str:
    servers = "\n".join(f"        server 127.0.0.1:{p};" for p in replica_ports)
    return NGINX_CONFIG.format(
        folder=folder, address=address, port=port, servers=servers, cookie=COOKIE, upload_mb=upload_mb
    )


def start_replica(port: int, cookie_secret: str, options: list[str]) -> subprocess.Popen:
    """One `python serve.py` on 127.0.0.1:PORT (only nginx is reached from outside)."""
    command = [sys.executable, str(ROOT / "serve.py"), "--server.port", str(port), "--server.address", "127.0.0.1"]
    command += ["--server.headless", "true", *options]
    return subprocess.Popen(command, cwd=ROOT, env={**os.environ, "STREAMLIT_SERVER_COOKIE_SECRET": cookie_secret})


def wait_healthy(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the replica on port {port} did not answer within {timeout_s:.0f} s; see its output above")


def start(args: argparse.Namespace, folder: Path, processes: list[subprocess.Popen]) -> None:
    """Start the replicas, then nginx in front of them, each added to PROCESSES as it starts."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise SystemExit("nginx is not installed: `sudo apt-get install nginx-light`, then run this again.")
    secret = secrets.token_hex(32)
    ports = [args.port + 1 + i for i in range(args.replicas)]
    processes += [start_replica(p, secret, args.streamlit) for p in ports]
    for p in ports:
        wait_healthy(p, args.timeout)
    config = folder / "nginx.conf"
    config.write_text(nginx_config(folder, args.address, args.port, ports, args.upload_mb))
    processes.append(subprocess.Popen([nginx, "-c", str(config), "-p", str(folder), "-g", "daemon off;"]))


def stop(processes: list[subprocess.Popen], grace_s: float = 15) -> None:
    """Ask every process to stop, nginx first; any still running after GRACE_S in all is killed."""
    for process in reversed(processes):
        process.terminate()
    deadline = time.monotonic() + grace_s
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=2, help="copies of the page, each its own process")
    parser.add_argument("--port", type=int, default=8501, help="nginx's port; the replicas take the next ones")
    parser.add_argument("--address", default="127.0.0.1", help="nginx's address (0.0.0.0: beyond this machine)")
    parser.add_argument("--upload-mb", type=int, default=1100, help="the largest request nginx passes on, MB")
    parser.add_argument("--timeout", type=float, default=120, help="seconds a replica may take to start")
    parser.add_argument("streamlit", nargs="*", help="options for every replica's streamlit, after --")
    args = parser.parse_args(argv)
    if args.replicas < 1:
        raise SystemExit("--replicas must be at least 1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # Ctrl-C stops everything even when started as a background job, which ignores SIGINT
    signal.signal(signal.SIGINT, signal.default_int_handler)
    processes: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="latent-explorer-nginx-") as folder:
        try:
            start(args, Path(folder), processes)
            print(f"{args.replicas} replicas behind http://{args.address}:{args.port} (Ctrl-C stops them)", flush=True)
            while all(p.poll() is None for p in processes):
                time.sleep(0.5)
            raise SystemExit("a replica or nginx stopped; stopping the others")
        except KeyboardInterrupt:
            pass
        finally:
            stop(processes)


if __name__ == "__main__":
    main()
