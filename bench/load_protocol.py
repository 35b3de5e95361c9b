"""Load through Streamlit's own websocket protocol, no browser: N simulated sessions against one
local `streamlit run app.py`, each doing what a user's browser sends, with think time between.

Each session fetches the XSRF cookie, connects to /_stcore/stream as the browser does, runs the
page, then loops: think (exponential, mean --think seconds), then one action, as the browser
would send it: the release of a slider drag (the live component's JSON state with a new latent),
the Random button, another view, or, in the Anomaly view, an upload of a PNG through the upload
endpoint (with its XSRF token) and the rerun that hands it to the page. Every rerun carries the
widget states the session has set (a browser sends them all), the query string the server last
set and the hashes of the cacheable messages it holds (so that the server sends references, as
to a browser). Widget ids come from the deltas; the bundles the components' JSON names (a decoder,
the map's points) are fetched over HTTP once per session, as a browser with an empty cache does.
Hundreds of sessions run in one asyncio process.

Per level of sessions: errors (an exception on the page, a refused or dropped connection, a
rerun that did not finish within --timeout), rerun latency split into queueing (send -> the
run's new_session message) and run (-> script_finished), p50 / p95; the server's CPU seconds per
rerun (from /proc); its resident memory after the first session, at the peak, per session, and
after the sessions close (the server runs with --server.disconnectedSessionTTL 5).

    python bench/load_protocol.py [--levels 10,30,100,300] [--seconds 120] [--think 4]
    python bench/load_protocol.py --url http://127.0.0.1:8501 --pids 123,456   # e.g. `make app-replicas`

Writes bench/results/load_protocol.json and .md (or --name).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import random
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import websockets
from PIL import Image, ImageDraw
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import cpu_seconds, percentiles, rss_mb, sample_memory  # noqa: E402
from bench.report import write_report  # noqa: E402
from tests.browser_support import free_port, start_server  # noqa: E402

XSRF_COOKIE = "_streamlit_xsrf"
LATENT_DIM = 8
ACTIONS = {"release": 0.6, "random": 0.15, "view": 0.15, "upload": 0.1}  # each action's share
SERVER_OPTIONS = ("--server.disconnectedSessionTTL", "5")


class PageError(Exception):
    """What a user would see go wrong: an exception on the page, a rerun that never finished."""


# --------------------------------------------------------------------------- one session


@dataclass
class Session:
    """One simulated browser tab: its connection and what its browser would remember."""

    base: str  # http://host:port
    cookies: dict[str, str] = field(default_factory=dict)  # what the server set: XSRF, a proxy's
    socket: object = None
    session_id: str = ""
    query_string: str = ""
    fragment_id: str = ""
    ids: dict[str, str] = field(default_factory=dict)  # widget key (or a button's label) -> widget id
    views: list[str] = field(default_factory=list)
    states: dict[str, WidgetState] = field(default_factory=dict)  # widget id -> the value last set
    cached: set[str] = field(default_factory=set)  # hashes of cacheable messages received
    pending: list[ForwardMsg] = field(default_factory=list)  # received before anyone asked
    texts: list[str] = field(default_factory=list)  # the markdown the last rerun drew
    replica: str = ""  # behind `make app-replicas`: the replica nginx keeps this session on
    bundles: dict[str, bool] = field(default_factory=dict)  # bundle URL path -> fetched yet

    async def connect(self) -> None:
        self.cookies, self.replica = await asyncio.to_thread(server_cookies, self.base)
        url = self.base.replace("http", "ws", 1) + "/_stcore/stream"
        self.socket = await websockets.connect(
            url,
            subprotocols=["streamlit", self.cookies[XSRF_COOKIE]],
            additional_headers={"Cookie": self.cookie_header, "Origin": self.base},
            max_size=None,
        )

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.cookies.items())

    async def receive(self) -> ForwardMsg:
        if self.pending:
            return self.pending.pop(0)
        msg = ForwardMsg()
        msg.ParseFromString(await self.socket.recv())
        return msg

    def note(self, msg: ForwardMsg) -> None:
        """Remember what a browser would from MSG: widget ids, the query string, cache hashes."""
        kind = msg.WhichOneof("type")
        if msg.metadata.cacheable:
            self.cached.add(msg.hash)
        if kind == "new_session" and msg.new_session.initialize.session_id:
            self.session_id = msg.new_session.initialize.session_id
        elif kind == "page_info_changed":
            self.query_string = msg.page_info_changed.query_string
        elif kind == "delta":
            self.note_delta(msg)

    def note_delta(self, msg: ForwardMsg) -> None:
        if msg.delta.fragment_id:
            self.fragment_id = msg.delta.fragment_id
        if msg.delta.WhichOneof("type") != "new_element":
            return
        element = msg.delta.new_element
        kind = element.WhichOneof("type")
        if kind == "bidi_component" and element.bidi_component.json:
            self.note_bundles(json.loads(element.bidi_component.json))
        if kind == "exception":
            raise PageError(f"the page showed an exception: {element.exception.message[:200]}")
        if kind == "markdown":
            self.texts.append(element.markdown.body)
        widget = getattr(element, kind)
        widget_id = getattr(widget, "id", "")
        if not widget_id.startswith("$$ID-"):
            return
        key = widget_id.split("-", 2)[2]
        self.ids[widget.label if key == "None" else key] = widget_id
        if key == "view":
            self.views = [option.content for option in widget.options]

    def note_bundles(self, payload: dict) -> None:
        """The bundles a component's JSON names, which its browser would fetch (ui/bundles.py)."""
        compare = payload.get("compare") or {}
        ids = [payload.get(k) for k in ("bundle_id", "points_id", "thumbnails_id", "train_points_id")]
        for bundle_id in [*ids, compare.get("bundle_id")]:
            if bundle_id:
                self.bundles.setdefault(payload["bundle_url"] + bundle_id, False)

    async def fetch_bundles(self) -> None:
        """GET each bundle not fetched yet, as a browser with an empty cache would, once."""
        for path, fetched in list(self.bundles.items()):
            if not fetched:
                request = urllib.request.Request(self.base + path, headers={"Cookie": self.cookie_header})
                await asyncio.to_thread(lambda r=request: urllib.request.urlopen(r, timeout=60).read())
                self.bundles[path] = True

    async def rerun(self, changed: list[WidgetState], timeout: float) -> tuple[float, float]:
        """Send a rerun with CHANGED on top of the widget states set so far; wait until it
        finishes. Returns (queueing, run) in seconds: send -> new_session -> script_finished."""
        for state in changed:
            if state.WhichOneof("value") != "trigger_value":  # a button's press is sent once
                self.states[state.id] = state
        msg = BackMsg()
        client = msg.rerun_script
        client.query_string = self.query_string
        client.fragment_id = self.fragment_id
        client.cached_message_hashes.extend(sorted(self.cached))
        widgets = {**self.states, **{s.id: s for s in changed}}
        client.widget_states.widgets.extend(widgets.values())
        self.texts = []
        sent = time.perf_counter()
        await self.socket.send(msg.SerializeToString())
        started = None
        async with asyncio.timeout(timeout):
            while True:
                reply = await self.receive()
                self.note(reply)
                kind = reply.WhichOneof("type")
                if kind == "new_session" and started is None:
                    started = time.perf_counter()
                elif kind == "script_finished" and started is not None:
                    finished = time.perf_counter()
                    return started - sent, finished - started

    async def upload(self, name: str, data: bytes, timeout: float) -> WidgetState:
        """Upload DATA as the file NAME the way the uploader does: ask for its URL over the
        socket, PUT it with the XSRF token; returns the uploader's new widget state."""
        request = BackMsg()
        request.file_urls_request.request_id = str(uuid.uuid4())
        request.file_urls_request.file_names.append(name)
        request.file_urls_request.session_id = self.session_id
        await self.socket.send(request.SerializeToString())
        async with asyncio.timeout(timeout):
            while True:
                reply = await self.receive()
                if reply.WhichOneof("type") == "file_urls_response":
                    urls = reply.file_urls_response.file_urls[0]
                    break
                self.note(reply)
        await asyncio.to_thread(put_file, self.base + urls.upload_url, self.cookies, name, data)
        state = WidgetState(id=self.ids["anomaly_upload"])
        info = state.file_uploader_state_value.uploaded_file_info.add()
        info.name, info.size, info.file_id = name, len(data), urls.file_id
        return state


def server_cookies(base: str) -> tuple[dict[str, str], str]:
    """The cookies the server (or a proxy in front) sets on its health check, as a browser
    keeps them (the XSRF token's, a sticky proxy's), and the replica that answered, if said."""
    cookies = {}
    with urllib.request.urlopen(base + "/_stcore/health", timeout=30) as response:
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            cookies[name.strip()] = rest.split(";")[0]
        replica = response.headers.get("X-Replica", "")
    if XSRF_COOKIE not in cookies:
        raise PageError("the server set no XSRF cookie")
    return cookies, replica


def put_file(url: str, cookies: dict[str, str], name: str, data: bytes) -> None:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(url, data=body, method="PUT")
    request.add_header("Content-Type", f"multipart/form-data; boundary={boundary}")
    request.add_header("X-Xsrftoken", cookies[XSRF_COOKIE])
    request.add_header("Cookie", "; ".join(f"{n}={v}" for n, v in cookies.items()))
    with urllib.request.urlopen(request, timeout=30) as response:
        if response.status != 204:
            raise PageError(f"the upload answered {response.status}")


def digit_png(rng: random.Random) -> bytes:
    """A one drawn as a user would upload it: dark ink on light paper, 300 × 400."""
    image = Image.new("L", (300, 400), 230)
    top = rng.randint(120, 180)
    ImageDraw.Draw(image).line([(top, 40), (rng.randint(120, 180), 360)], fill=10, width=rng.randint(20, 36))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


# --------------------------------------------------------------------------- what users do


def widget(session: Session, key: str) -> WidgetState:
    if key not in session.ids:
        raise PageError(f"the page has no widget {key!r} where a user would find it")
    return WidgetState(id=session.ids[key])


def release(session: Session, rng: random.Random) -> WidgetState:
    """The live component's state at the release of a drag: the latent the browser decoded."""
    state = widget(session, "live_latent")
    state.json_value = json.dumps({"latent": [round(rng.uniform(-2, 2), 2) for _ in range(LATENT_DIM)]})
    return state


def view(session: Session, name: str) -> WidgetState:
    state = widget(session, "view")
    state.string_array_value.data.append(name)
    return state


async def act(session: Session, rng: random.Random, timeout: float) -> list[tuple[float, float]]:
    """One user action, drawn by ACTIONS' shares; the (queueing, run) times of its reruns."""
    action = rng.choices(list(ACTIONS), weights=list(ACTIONS.values()))[0]
    if action == "release":
        state = release(session, rng)
        times = [await session.rerun([state], timeout)]
        latent = ",".join(f"{v:.3f}" for v in json.loads(state.json_value)["latent"])
        if f"z={latent.replace(',', '%2C')}" not in session.query_string:
            raise PageError(f"the server did not take the released latent ({session.query_string[:120]})")
        return times
    if action == "random":
        press = widget(session, "Random")
        press.trigger_value = True
        return [await session.rerun([press], timeout)]
    if action == "view":
        return [await session.rerun([view(session, rng.choice(session.views))], timeout)]
    return await upload_digit(session, rng, timeout)


async def upload_digit(session: Session, rng: random.Random, timeout: float) -> list[tuple[float, float]]:
    """Open the Anomaly view's uploader and upload a drawn one: three reruns."""
    times = [await session.rerun([view(session, "Anomaly")], timeout)]
    source = widget(session, "anomaly_source")
    source.string_value = "upload"
    times.append(await session.rerun([source], timeout))
    uploaded = await session.upload(f"digit-{rng.randrange(10**6)}.png", digit_png(rng), timeout)
    times.append(await session.rerun([uploaded], timeout))
    if not any("Anomaly score:" in text for text in session.texts):
        raise PageError("the uploaded digit was not scored")
    return times


@dataclass
class Tally:
    """One level's counts and latencies, in seconds."""

    queueing: list[float] = field(default_factory=list)
    run: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    completed: int = 0  # sessions that ran to the end without an error
    replicas: dict[str, int] = field(default_factory=dict)  # sessions per replica, behind a proxy
    bundles_fetched: int = 0  # bundles (decoders, points) fetched over HTTP, by every session

    def add(self, times: list[tuple[float, float]]) -> None:
        for queued, ran in times:
            self.queueing.append(queued)
            self.run.append(ran)


async def user(
    base: str, start_after: float, deadline: float, args: argparse.Namespace, seed: int, tally: Tally
) -> None:
    """One session: open the page, then think and act until DEADLINE (monotonic seconds)."""
    rng = random.Random(seed)
    await asyncio.sleep(start_after)
    session = Session(base)
    try:
        await session.connect()
        if session.replica:
            tally.replicas[session.replica] = tally.replicas.get(session.replica, 0) + 1
        tally.add([await session.rerun([], args.timeout)])
        await session.fetch_bundles()
        while time.monotonic() < deadline:
            await asyncio.sleep(min(rng.expovariate(1 / args.think), max(0.0, deadline - time.monotonic())))
            if time.monotonic() < deadline:
                tally.add(await act(session, rng, args.timeout))
                await session.fetch_bundles()
        tally.completed += 1
        tally.bundles_fetched += sum(session.bundles.values())
    except (PageError, TimeoutError, websockets.ConnectionClosed, OSError) as error:
        tally.errors.append(f"{type(error).__name__}: {error}"[:300])
    finally:
        if session.socket is not None:
            await session.socket.close()


# --------------------------------------------------------------------------- the levels


def cpu_s(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def memory_mb(pids: list[int]) -> float:
    return sum(rss_mb(pid) for pid in pids)


async def one_session_level(base: str, pids: list[int], timeout: float) -> float | None:
    """The server's memory, MB, with one session open that has done everything once: every
    view, a release, Random, an upload. The level the server returns to after a crowd leaves."""
    rng = random.Random(0)
    session = Session(base)
    await session.connect()
    try:
        await session.rerun([], timeout)
        for name in session.views:
            await session.rerun([view(session, name)], timeout)
        await session.rerun([release(session, rng)], timeout)
        await upload_digit(session, rng, timeout)
        return memory_mb(pids) if pids else None
    finally:
        await session.socket.close()


async def run_level(base: str, pids: list[int], sessions: int, args: argparse.Namespace) -> dict:
    """SESSIONS users arriving over the first --ramp seconds, acting for --seconds in all."""
    tally, samples, stop = Tally(), [], asyncio.Event()
    cpu_before = cpu_s(pids) if pids else None
    memory_before = memory_mb(pids) if pids else None
    monitor = asyncio.create_task(sample_memory(pids, samples, stop)) if pids else None
    started = time.monotonic()
    deadline = started + args.seconds
    ramp = min(args.ramp, args.seconds / 2)
    await asyncio.gather(
        *(user(base, ramp * i / sessions, deadline, args, 1000 * sessions + i, tally) for i in range(sessions))
    )
    wall = time.monotonic() - started
    stop.set()
    if monitor:
        await monitor
    reruns = len(tally.run)
    result = {"sessions": sessions, "seconds": wall, "reruns": reruns, "completed": tally.completed}
    result |= {"errors": len(tally.errors), "error_examples": sorted(set(tally.errors))[:5]}
    result["sessions_per_replica"] = tally.replicas
    result["bundles_fetched"] = tally.bundles_fetched
    result["queueing"] = percentiles([1000 * q for q in tally.queueing])
    result["run"] = percentiles([1000 * r for r in tally.run])
    result["total"] = percentiles([1000 * (q + r) for q, r in zip(tally.queueing, tally.run)])
    if pids:
        cpu = cpu_s(pids) - cpu_before
        result |= {"server_cpu_s": cpu, "cpu_ms_per_rerun": 1000 * cpu / max(reruns, 1), "cores": cpu / wall}
        result |= {"memory_before_mb": memory_before, "memory_peak_mb": max(samples, default=memory_before)}
        await asyncio.sleep(args.settle)  # the closed sessions outlive their sockets by the TTL
        result["memory_after_mb"] = memory_mb(pids)
    return result


def start(args: argparse.Namespace) -> tuple[str, object | None]:
    """The server's base URL, and the process started for it (None for --url)."""
    if args.url:
        return args.url.rstrip("/"), None
    port = free_port()
    return f"http://127.0.0.1:{port}", start_server(port, options=SERVER_OPTIONS)


async def run(args: argparse.Namespace) -> dict:
    base, process = start(args)
    pids = [process.pid] if process else args.pids
    try:
        one = await one_session_level(base, pids, args.timeout)
        await asyncio.sleep(args.settle)
        levels = []
        for sessions in args.levels:
            level = await run_level(base, pids, sessions, args)
            if one is not None:
                level["memory_per_session_mb"] = (level["memory_peak_mb"] - one) / sessions
                level["memory_after_vs_one_session"] = level["memory_after_mb"] / one
            levels.append(level)
            print(json.dumps({k: level[k] for k in ("sessions", "reruns", "errors")} | {"total": level["total"]}))
    finally:
        if process:
            process.terminate()
            process.wait(timeout=30)
    result = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "think_s": args.think, "seconds": args.seconds}
    return result | {"one_session_memory_mb": one, "levels": levels}


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def report_lines(result: dict) -> list[str]:
    lines = [
        f"Sessions through Streamlit's protocol, {result['date']} ({result['machine']}): each user thinks "
        f"{result['think_s']:g} s on average between actions for {result['seconds']:g} s; server memory with one "
        f"session: {result['one_session_memory_mb'] or 0:.0f} MB",
        "",
        "| sessions | reruns | errors | queueing p50 / p95 ms | run p50 / p95 ms | rerun p50 / p95 ms | "
        "server CPU ms per rerun (cores) | memory peak MB (per session) | after closing MB (× one session) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for level in result["levels"]:
        q, r, t = level["queueing"], level["run"], level["total"]
        cells = [
            str(level["sessions"]),
            str(level["reruns"]),
            f"{level['errors']} ({level['sessions'] - level['completed']} sessions dropped)",
            f"{q['p50_ms']:.0f} / {q['p95_ms']:.0f}",
            f"{r['p50_ms']:.0f} / {r['p95_ms']:.0f}",
            f"{t['p50_ms']:.0f} / {t['p95_ms']:.0f}",
        ]
        if "server_cpu_s" in level:
            cells.append(f"{level['cpu_ms_per_rerun']:.0f} ({level['cores']:.2f})")
            cells.append(f"{level['memory_peak_mb']:.0f} ({level.get('memory_per_session_mb', 0):.2f})")
            cells.append(f"{level['memory_after_mb']:.0f} ({level.get('memory_after_vs_one_session', 0):.2f}×)")
        else:
            cells += ["", "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="10,30,100,300", help="numbers of simultaneous sessions, in turn")
    parser.add_argument("--seconds", type=float, default=120, help="how long each level lasts")
    parser.add_argument("--think", type=float, default=4, help="mean think time between a user's actions, s")
    parser.add_argument("--ramp", type=float, default=10, help="users arrive over this many seconds")
    parser.add_argument("--timeout", type=float, default=60, help="a rerun not finished by then is an error")
    parser.add_argument("--settle", type=float, default=30, help="seconds after a level before memory is read")
    parser.add_argument("--url", help="an already running server, or a proxy in front of several")
    parser.add_argument("--pids", default="", help="with --url: the server processes whose CPU and memory to read")
    parser.add_argument("--name", default="load_protocol")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args(argv)
    args.levels = [int(n) for n in args.levels.split(",")]
    args.pids = [int(p) for p in args.pids.split(",") if p]
    result = asyncio.run(run(args))
    write_report(args.out, args.name, result, report_lines(result))
    return result


if __name__ == "__main__":
    main()
