"""The HTTP side of the agent API contract (docs/agent-api.md): one method per endpoint, errors sorted by what
the caller should do about them."""

from __future__ import annotations

import http.client
import json
import random
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from provisioner.agent import AGENT_VERSION

# The contract caps the long-poll at 30 s.
MAX_WAIT_S = 30
# Slack over the long-poll's own wait, so a slow answer is not mistaken for a dead connection.
POLL_GRACE_S = 15
# Short calls (register, heartbeat, progress, result): long enough for a control plane under a rack's worth of
# registrations, short enough that a dead connection is noticed well within one heartbeat interval.
REQUEST_TIMEOUT_S = 20


class NetworkError(Exception):
    """Connection refused or reset, a timeout, a 5xx or 429: worth retrying later."""


class Unauthorized(Exception):
    """401: the token is invalid, which once the agent has registered means the install ended."""


class Refused(Exception):
    """403 on register: this is not the machine the install is for, or its boot credential was already used."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class Rejected(Exception):
    """400, 404, 409: the control plane will not take this request however often it is sent. ``body`` is its
    problem document (RFC 9457): ``detail`` says why, ``field`` names the field at fault."""

    def __init__(self, status: int, body: dict):
        detail = str(body.get("detail") or body)
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.body = body
        self.detail = detail


@dataclass
class Backoff:
    """Exponential backoff with jitter: retries from a fleet that lost its network spread out instead of
    arriving together when it comes back."""

    base_s: float = 1.0
    cap_s: float = 60.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.base_s * (2**self.attempt))
        self.attempt += 1
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


def jittered(seconds: float, rng: random.Random | None = None, spread: float = 0.2) -> float:
    return seconds * (rng or random).uniform(1 - spread, 1 + spread)


def decode(raw: bytes) -> dict:
    """A JSON object answer; {} for an empty, non-JSON or non-object body (a proxy's error page)."""
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class Client:
    """Talks with the boot credential from the kernel command line until the registration answer hands
    over the agent token (``adopt``), and with that token from then on."""

    def __init__(self, base_url: str, token: str):
        self.base = base_url.rstrip("/")
        self.api = self.base + "/api/agent/v1/"
        self._token = token
        self._callback_token = ""
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"Client({self.api!r})"

    def adopt(self, token: str, callback_token: str = "") -> None:
        """The agent token (and the installed OS's callback token) from the registration answer."""
        self._token = token
        self._callback_token = callback_token or self._callback_token

    def identity(self) -> tuple[str, str]:
        """The control plane URL and the callback token, for the one task that must leave them behind
        (first_boot_callback writes the installed OS's callback). A control plane that hands over no
        callback token takes the token the agent talks with."""
        return self.base, self._callback_token or self._token

    def _request(self, method: str, path: str, body: dict | None = None, timeout: float = REQUEST_TIMEOUT_S) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.api + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self._token}")
        req.add_header("Accept", "application/json")
        req.add_header("User-Agent", f"provisioner-agent/{AGENT_VERSION}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return decode(resp.read())
        except urllib.error.HTTPError as exc:
            status = exc.code
            payload = decode(exc.read() or b"")
            if status == 401:
                raise Unauthorized(f"{method} {path}: 401") from None
            if status == 403:
                raise Refused(str(payload.get("reason") or "Forbidden"), str(payload.get("detail", ""))) from None
            if status >= 500 or status in (408, 429):
                raise NetworkError(f"{method} {path}: HTTP {status}") from None
            raise Rejected(status, payload) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            # The message of a URLError can quote the request; only its reason is kept.
            reason = getattr(exc, "reason", exc)
            raise NetworkError(f"{method} {path}: {reason}") from None

    def register(self, facts: dict, key: str = "") -> dict:
        body = {"agent_version": AGENT_VERSION, "facts": facts}
        if key:
            body["key"] = key
        return self._request("POST", "register", body)

    def heartbeat(self) -> dict:
        return self._request("POST", "heartbeat", {})

    def next_task(self, wait_s: int = 25) -> dict:
        wait_s = max(0, min(MAX_WAIT_S, wait_s))
        return self._request("GET", f"tasks/next?wait={wait_s}", timeout=wait_s + POLL_GRACE_S)

    def progress(self, task_id: str, percent: int, message: str, log_lines: list[str]) -> dict:
        body = {"percent": percent, "message": message, "log": log_lines}
        return self._request("POST", f"tasks/{urllib.parse.quote(task_id, safe='')}/progress", body)

    def result(self, task_id: str, body: dict) -> dict:
        return self._request("POST", f"tasks/{urllib.parse.quote(task_id, safe='')}/result", body)
