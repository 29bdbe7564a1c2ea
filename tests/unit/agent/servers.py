"""Small HTTP servers on 127.0.0.1 for the agent tests: an image server (Range support and connection cuts
toggled per test), a stand-in control plane that speaks the agent API contract, for protocol behaviour only:
tasks/next long-polls, and hands out the tasks of a parallel stage while others run; and the control plane's side
of discovery mode."""

from __future__ import annotations

import hashlib
import json
import socket
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _serve(handler_cls, state, port: int = 0) -> _Server:
    server = _Server(("127.0.0.1", port), handler_cls)
    server.state = state
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def _reset(handler: BaseHTTPRequestHandler, abort: bool = True) -> None:
    """Drop the connection: with `abort`, a reset (RST) as a crashed proxy sends; without, a close mid-body
    (what was sent still arrives, then the stream ends short)."""
    handler.close_connection = True
    try:
        if abort:
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


# -- image server -----------------------------------------------------------------------------------------------


@dataclass
class ImageFiles:
    files: dict[str, bytes] = field(default_factory=dict)
    ranges: bool = True
    # Per request, in order: cut the connection after this many body bytes (None: send it all).
    cuts: list[int | None] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    etag: str = '"v1"'
    # A broken cache in front: it answers a Range request with 206 but from byte 0.
    wrong_range: bool = False
    # The file changes on the server when a connection is cut (a new image uploaded under the same name).
    etag_after_cut: str | None = None
    # Answer HEAD with the file's length, as nginx and object stores do (False: 501, as a bare server would).
    head: bool = True
    heads: list[str] = field(default_factory=list)


class ImageHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        state: ImageFiles = self.server.state
        state.heads.append(self.path)
        body = state.files.get(self.path)
        self.send_response(501 if not state.head else 404 if body is None else 200)
        self.send_header("Content-Length", str(len(body)) if state.head and body is not None else "0")
        self.end_headers()

    def do_GET(self):
        state: ImageFiles = self.server.state
        body = state.files.get(self.path)
        rng = self.headers.get("Range")
        state.requests.append({"path": self.path, "range": rng, "if_range": self.headers.get("If-Range")})
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = 0
        if rng and state.ranges and self.headers.get("If-Range", state.etag) == state.etag:
            start = 0 if state.wrong_range else int(rng.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("ETag", state.etag)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        cut = state.cuts.pop(0) if state.cuts else None
        payload = body[start:] if cut is None else body[start : start + cut]
        self.wfile.write(payload)
        self.wfile.flush()
        if cut is not None:
            _reset(self, abort=False)
            if state.etag_after_cut:
                state.etag = state.etag_after_cut


def image_server(state: ImageFiles) -> tuple[_Server, str]:
    server = _serve(ImageHandler, state)
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# -- control plane stand-in -------------------------------------------------------------------------------------

TOKEN = "tok-3f9a1c7e5b2d-never-logged"  # the boot credential, from the kernel command line
AGENT_TOKEN = "agent-7c1e5b2d3f9a-never-logged"  # handed over by the registration answer
CALLBACK_TOKEN = "callback-5b2d3f9a7c1e-never-logged"


@dataclass
class Plan:
    # In order; adjacent tasks with the same "stage" value form a parallel stage, handed out together (the key
    # stays here: the agent is sent id, kind and params).
    tasks: list[dict] = field(default_factory=list)
    # The control plane of before parallel stages: tasks/next hands out the current task again, at once, until
    # its result is in.
    rehand: bool = False
    heartbeat_s: float = 30
    # The progress interval register and each progress answer hand out (None: they say nothing).
    progress_s: float | None = None
    macs: tuple[str, ...] = ()
    cancel: bool = False
    revoked: bool = False
    # Paths (after /api/agent/v1/) answered by dropping the connection while the outage lasts.
    outage: set[str] = field(default_factory=set)
    # register answers 503 this many times first.
    register_503s: int = 0
    # register is carried out, then its answer is lost (the connection drops) this many times first.
    lost_register_answers: int = 0
    # The boot credential's one use: spent at the first registration, with the key sent along.
    boot_spent: bool = False
    key: str = ""
    agent_token_used: bool = False
    # Paths answered 400, as an invalid body would be.
    bad_request: set[str] = field(default_factory=set)
    # tasks/next answers "nothing ready yet" this many times first.
    idle_polls: int = 0
    # Called with (task id, body) as each result arrives, before it is answered.
    on_result: object = None
    requests: list[tuple[float, str, str]] = field(default_factory=list)
    registered: list[dict] = field(default_factory=list)
    heartbeats: int = 0
    progress: list[tuple[str, dict]] = field(default_factory=list)
    results: dict[str, list[dict]] = field(default_factory=dict)
    auth_headers: set[str] = field(default_factory=set)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (path, Authorization) of every request
    handed: list[str] = field(default_factory=list)  # task ids in the order they were handed out
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        self.changed = threading.Condition(self.lock)

    def done(self, task: dict) -> bool:
        return any(r.get("ok") is not None for r in self.results.get(task["id"], []))

    def current(self) -> dict | None:
        for task in self.tasks:
            if not self.done(task):
                return task
        return None

    def ready(self) -> dict | None:
        """The next task to hand out: one of the current stage not handed out yet (None: wait)."""
        first = self.current()
        if first is None:
            return None
        if self.rehand:
            return first
        stage = first.get("stage")
        at = self.tasks.index(first)
        for task in self.tasks[at:]:
            if task is not first and (stage is None or task.get("stage") != stage):
                break
            if task["id"] not in self.handed and not self.done(task):
                return task
        return None

    def paths(self) -> list[str]:
        return [path for _, _, path in self.requests]


class ControlPlaneHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    PREFIX = "/api/agent/v1/"

    def log_message(self, *args):
        pass

    def _answer(self, status: int, body: dict) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if status < 400 else "application/problem+json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _handle(self, method: str) -> None:
        plan: Plan = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        path = self.path.removeprefix(self.PREFIX).split("?")[0]
        with plan.lock:
            plan.requests.append((time.monotonic(), method, path))
            plan.auth_headers.add(self.headers.get("Authorization", ""))
            plan.calls.append((path, self.headers.get("Authorization", "")))
            if any(path == p or path.endswith("/" + p) for p in plan.outage):
                _reset(self)
                return
            auth = self.headers.get("Authorization")
            boot = auth == f"Bearer {TOKEN}" and path == "register"
            if not (boot or auth == f"Bearer {AGENT_TOKEN}") or plan.revoked:
                return self._answer(401, problem(401, "Unauthorized"))
            plan.agent_token_used |= not boot
            if path in plan.bad_request:
                return self._answer(400, problem(400, "facts: invalid", field="facts"))
            if path == "register":
                if plan.register_503s:
                    plan.register_503s -= 1
                    return self._answer(503, {})
                macs = {nic["mac"] for nic in body["facts"]["nics"]}
                if plan.macs and not macs & set(plan.macs):
                    refusal = problem(403, "booted on a machine that is not web01", reason="WrongMachine")
                    return self._answer(403, refusal)
                answer = {"install": 12, "hostname": "web01", "heartbeat_s": plan.heartbeat_s}
                if plan.progress_s is not None:
                    answer["progress_s"] = plan.progress_s
                if boot:
                    asks_again = plan.boot_spent and body.get("key") == plan.key and not plan.agent_token_used
                    if plan.boot_spent and not asks_again:
                        refusal = problem(403, "already used; install stopped", reason="BootCredentialReused")
                        return self._answer(403, refusal)
                    plan.boot_spent, plan.key = True, body.get("key", "")
                    answer.update(token=AGENT_TOKEN, callback_token=CALLBACK_TOKEN)
                plan.registered.append(body)
                # A (re)starting agent holds no task: what was handed out before is handed out again.
                plan.handed.clear()
                if plan.lost_register_answers:
                    plan.lost_register_answers -= 1
                    _reset(self)
                    return
                return self._answer(200, answer)
            if path == "heartbeat":
                plan.heartbeats += 1
                return self._answer(200, {"ok": True, "cancel": plan.cancel})
            if path == "tasks/next":
                if plan.idle_polls:
                    plan.idle_polls -= 1
                    return self._answer(200, {"task": None, "retry_after_s": 0.05})
                # A long poll: until a task is ready or `wait` seconds passed.
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                deadline = time.monotonic() + float(query.get("wait", ["0"])[0])
                while True:
                    if plan.current() is None:
                        return self._answer(200, {"task": None, "finished": True})
                    task = plan.ready()
                    if task is not None:
                        plan.handed.append(task["id"])
                        sent = {key: task[key] for key in ("id", "kind", "params") if key in task}
                        return self._answer(200, {"task": sent})
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return self._answer(200, {"task": None, "retry_after_s": 0.05})
                    plan.changed.wait(min(left, 0.05))
            if path.startswith("tasks/") and path.endswith("/progress"):
                plan.progress.append((path.split("/")[1], body))
                paced = {} if plan.progress_s is None else {"progress_s": plan.progress_s}
                return self._answer(200, {"ok": True, **paced})
            if path.startswith("tasks/") and path.endswith("/result"):
                if plan.on_result is not None:
                    plan.on_result(path.split("/")[1], body)
                plan.results.setdefault(path.split("/")[1], []).append(body)
                plan.changed.notify_all()
                return self._answer(200, {"ok": True})
            return self._answer(404, problem(404, f"no {path} here"))

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")


def problem(status: int, detail: str, *, field: str = "", reason: str = "") -> dict:
    """An error answer as the control plane gives it (core/problems.py)."""
    title = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}[status]
    return {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "field": field,
        "errors": [],
        "problems": [],
        "reason": reason,
    }


def control_plane(plan: Plan, port: int = 0) -> tuple[_Server, str]:
    server = _serve(ControlPlaneHandler, plan, port)
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# -- discovery ------------------------------------------------------------------------------------------------------


@dataclass
class DiscoveryPlane:
    """The control plane's side of discovery mode (the fixed protocol), for protocol behaviour only."""

    registration_id: int = 41
    poll_s: float = 0.05
    # (status, body) answered to register, in order, before it registers.
    register_answers: list[tuple[int, dict]] = field(default_factory=list)
    # (status, body) answered to poll, in order, before tasks are handed out.
    poll_answers: list[tuple[int, dict]] = field(default_factory=list)
    # Handed out one per poll, in order; then {"task": null}.
    tasks: list[dict] = field(default_factory=list)
    # Polls answer 401 Discarded from then on (an operator discarded the machine).
    discarded: bool = False
    keys: dict[str, str] = field(default_factory=dict)  # MAC -> SHA-256 of its key
    registered: list[dict] = field(default_factory=list)
    facts: list[dict] = field(default_factory=list)
    done: list[dict] = field(default_factory=list)
    requests: list[tuple[float, str, str]] = field(default_factory=list)  # (time, path, Authorization)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def paths(self) -> list[str]:
        return [path for _, path, _ in self.requests]


class DiscoveryHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    PREFIX = "/api/v1/discovery/"
    MAX_BODY = 256 * 1024

    def log_message(self, *args):
        pass

    def _answer(self, status: int, body: dict) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self):
        plane: DiscoveryPlane = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        path = self.path.removeprefix(self.PREFIX)
        auth = self.headers.get("Authorization", "")
        with plane.lock:
            plane.requests.append((time.monotonic(), path, auth))
            if length > self.MAX_BODY:
                return self._answer(413, {"reason": "TooLarge", "message": "the body is over 256 KiB"})
            try:
                body = json.loads(raw)
            except ValueError:
                return self._answer(400, {"reason": "InvalidRequest", "message": "the body is not JSON"})
            if path == "register":
                return self._register(plane, body)
            registration, _, action = path.partition("/")
            key = auth.removeprefix("Discovery ") if auth.startswith("Discovery ") else ""
            key_ok = bool(key) and hashlib.sha256(key.encode()).hexdigest() in plane.keys.values()
            if registration != str(plane.registration_id) or not key_ok:
                return self._answer(401, {"reason": "Unauthorized", "message": "no such registration"})
            if plane.discarded:
                return self._answer(401, {"reason": "Discarded", "message": "an operator discarded this machine"})
            if action == "poll":
                if plane.poll_answers:
                    return self._answer(*plane.poll_answers.pop(0))
                task = plane.tasks.pop(0) if plane.tasks else None
                return self._answer(200, {"task": task, "poll_s": plane.poll_s})
            if action == "facts":
                plane.facts.append(body)
                return self._answer(200, {"ok": True})
            if action == "done":
                plane.done.append(body)
                return self._answer(200, {"ok": True})
            return self._answer(404, {"reason": "NotFound", "message": f"no {path} here"})

    def _register(self, plane: DiscoveryPlane, body: dict) -> None:
        if plane.register_answers:
            return self._answer(*plane.register_answers.pop(0))
        mac, key = body.get("mac"), body.get("key")
        if not isinstance(mac, str) or not isinstance(key, str) or not isinstance(body.get("facts"), dict):
            return self._answer(400, {"reason": "InvalidRequest", "message": "mac, key and facts are required"})
        digest = hashlib.sha256(key.encode()).hexdigest()
        if plane.keys.setdefault(mac, digest) != digest:
            return self._answer(409, {"reason": "KeyMismatch", "message": "this MAC registered with another key"})
        plane.registered.append(body)
        return self._answer(200, {"id": plane.registration_id, "poll_s": plane.poll_s})


def discovery_plane(plane: DiscoveryPlane) -> tuple[_Server, str]:
    server = _serve(DiscoveryHandler, plane)
    return server, f"http://127.0.0.1:{server.server_address[1]}"
