"""Discovery mode: a machine nobody has entered yet PXE-boots the memory OS with `provisioner.mode=discover` and no
token, announces itself with its full facts, and then only answers what the control plane asks (inventory again,
or power off) until someone accepts or discards it. The protocol (fixed, shared with the control plane):

    POST <url>/api/v1/discovery/register        {"mac", "key", "facts"}  -> {"id", "poll_s"}
    POST <url>/api/v1/discovery/<id>/poll       {}                       -> {"task": null | {"id", "kind"}, "poll_s"}
    POST <url>/api/v1/discovery/<id>/facts      {"task", "facts"}        -> {"ok": true}
    POST <url>/api/v1/discovery/<id>/done       {"task"[, "error"]}      -> {"ok": true}

Every call after register carries `Authorization: Discovery <key>`: a random key made once and kept in the state
directory (mode 0600), so a restarted agent registers again as the same machine. The control plane keeps only
its SHA-256 and hands a discovered machine nothing but inventory and poweroff.

Register answers: 403 KnownMachine with "then": "reboot" (the MAC is in inventory; its own boot config boots
its disk) reboots; other 403s and 409 KeyMismatch exit refused (4); 400 and 413 exit rejected (6); 429 waits the
`retry_after_s` it names; 5xx and network errors are retried with backoff. A 401 on any later call means the
registration is gone (discarded, or accepted and closed): exit 3.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import re
import secrets
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from provisioner.agent import AGENT_VERSION
from provisioner.agent.client import Backoff, NetworkError, Refused, Rejected, Unauthorized, decode, jittered
from provisioner.agent.host import Host
from provisioner.agent.loop import (
    EXIT_DONE,
    EXIT_INSTALL_ENDED,
    EXIT_REFUSED,
    EXIT_REJECTED,
    EXIT_STOPPED,
    MIN_INTERVAL_S,
    interval,
)
from provisioner.agent.tasks.system import fit_facts

log = logging.getLogger(__name__)

KEY_FILE = "discovery-key"
KEY = re.compile(r"^[0-9a-f]{64}$")
# The control plane refuses bodies over 256 KiB; facts are kept under this, leaving room for the rest.
MAX_FACTS_CHARS = 240 * 1024
REQUEST_TIMEOUT_S = 20
# When an answer gives no poll_s: often enough that an operator's "power off" is seen within seconds.
DEFAULT_POLL_S = 10.0
DEFAULT_LLDP_S = 10.0


class TooManyRequests(Exception):
    """429: the control plane limits registrations per address; `retry_after_s` says when to come back."""

    def __init__(self, retry_after_s: float | None):
        super().__init__(f"429, retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


class RebootRequested(Exception):
    """403 KnownMachine with "then": "reboot": this machine is in inventory, and its own boot config boots it."""


class _Stopped(Exception):
    pass


class DiscoveryClient:
    def __init__(self, base_url: str):
        self.base = base_url.rstrip("/") + "/api/v1/discovery/"

    def __repr__(self) -> str:
        return f"DiscoveryClient({self.base!r})"

    def _post(self, path: str, body: dict, key: str = "") -> dict:
        req = urllib.request.Request(self.base + path, data=json.dumps(body).encode(), method="POST")
        req.add_header("Content-Type", "application/json")
        req.add_header("Accept", "application/json")
        req.add_header("User-Agent", f"provisioner-agent/{AGENT_VERSION} (discovery)")
        if key:
            req.add_header("Authorization", f"Discovery {key}")
        try:
            with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as resp:
                return decode(resp.read())
        except urllib.error.HTTPError as exc:
            raise _error(exc.code, decode(exc.read() or b""), path) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            raise NetworkError(f"POST {path}: {getattr(exc, 'reason', exc)}") from None

    def register(self, mac: str, key: str, facts: dict) -> dict:
        return self._post("register", {"mac": mac, "key": key, "facts": facts})

    def poll(self, registration: int, key: str) -> dict:
        return self._post(f"{registration}/poll", {}, key)

    def facts(self, registration: int, key: str, task: str, facts: dict) -> dict:
        return self._post(f"{registration}/facts", {"task": task, "facts": facts}, key)

    def done(self, registration: int, key: str, task: str, error: str = "") -> dict:
        return self._post(f"{registration}/done", {"task": task, **({"error": error} if error else {})}, key)


def _error(status: int, payload: dict, path: str) -> Exception:
    reason = str(payload.get("reason") or "")
    message = str(payload.get("message") or payload.get("detail") or "")
    if status == 401:
        return Unauthorized(f"POST {path}: 401 {reason}")
    if status == 403 and payload.get("then") == "reboot":
        return RebootRequested(f"{reason}: {message}")
    if status in (403, 409):
        return Refused(reason or ("Forbidden" if status == 403 else "Conflict"), message)
    if status == 429:
        try:
            retry_after = float(payload["retry_after_s"])
        except (KeyError, TypeError, ValueError):
            retry_after = None
        return TooManyRequests(retry_after)
    if status >= 500 or status == 408:
        return NetworkError(f"POST {path}: HTTP {status}")
    return Rejected(status, {**payload, "detail": f"{reason}: {message}" if reason else message or str(payload)})


def load_key(state_dir: Path) -> str:
    """The key this machine registers with, made on first use and kept (0600, written whole or not at all)."""
    path = state_dir / KEY_FILE
    try:
        key = path.read_text().strip()
        if KEY.match(key):
            return key
    except OSError:
        pass
    key = secrets.token_hex(32)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = state_dir / f".{KEY_FILE}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (key + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return key


def boot_mac(kernel: dict[str, str]) -> str:
    """The MAC of the NIC the machine PXE-booted from: BOOTIF=01-aa-bb-cc-dd-ee-ff (pxelinux, GRUB, iPXE)."""
    bootif = kernel.get("BOOTIF", "").lower()
    match = re.match(r"^01-((?:[0-9a-f]{2}-){5}[0-9a-f]{2})$", bootif)
    return match.group(1).replace("-", ":") if match else ""


class Discovery:
    def __init__(
        self,
        client: DiscoveryClient,
        host: Host,
        state_dir: Path,
        *,
        mac: str = "",
        lldp_s: float = DEFAULT_LLDP_S,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 60.0,
        rng: random.Random | None = None,
    ):
        self.client = client
        self.host = host
        self.state_dir = state_dir
        self.mac = mac
        self.lldp_s = lldp_s
        self.rng = rng or random.Random()
        self._backoff = (backoff_base_s, backoff_cap_s)
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def _sleep(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise _Stopped

    def run(self) -> int:
        try:
            return self._run()
        except RebootRequested as exc:
            log.info("the control plane knows this machine (%s): rebooting into its own boot config", exc)
            self.host.reboot()
            return EXIT_DONE
        except Refused as exc:
            log.error("the control plane refused discovery: %s: %s", exc.reason, exc.message)
            return EXIT_REFUSED
        except Unauthorized:
            log.warning("the control plane no longer knows this registration (discarded, or accepted and closed)")
            return EXIT_INSTALL_ENDED
        except Rejected as exc:
            log.error("the control plane rejected a discovery request: %s", exc)
            return EXIT_REJECTED
        except _Stopped:
            log.info("stopped")
            return EXIT_STOPPED
        finally:
            try:
                self.host.release()
            except Exception:
                log.exception("releasing the host failed")

    def _run(self) -> int:
        key = load_key(self.state_dir)
        facts = self._facts()
        mac = self.mac or _first_linked_mac(facts)
        if not mac:
            raise Rejected(0, {"detail": "no BOOTIF= on the kernel command line and no NIC to name this machine by"})
        if not self.mac:
            log.warning("no BOOTIF= on the kernel command line: registering with %s, the first NIC with link", mac)
        answer = self._call("register", self.client.register, mac, key, facts)
        registration = answer.get("id")
        if isinstance(registration, bool) or not isinstance(registration, int):
            raise Rejected(200, {"detail": f"the register answer carries no registration id: {answer!r}"})
        poll_s = interval(answer.get("poll_s"), DEFAULT_POLL_S)
        log.info("registered for discovery as %s with MAC %s; polling every %.1f s", registration, mac, poll_s)
        return self._poll(registration, key, poll_s)

    def _facts(self) -> dict:
        found = self.host.facts_full(self.lldp_s)
        return json.loads(fit_facts(found, MAX_FACTS_CHARS))

    def _call(self, what: str, call, *args):
        """`call(*args)` until it goes through: the network and 5xx with backoff, 429 after the wait it names."""
        backoff = Backoff(*self._backoff, rng=self.rng)
        while True:
            if self._stop.is_set():
                raise _Stopped
            try:
                return call(*args)
            except TooManyRequests as exc:
                # Jittered upwards only: never back before the time the control plane named.
                delay = exc.retry_after_s * self.rng.uniform(1.0, 1.25) if exc.retry_after_s else backoff.next_delay()
                log.warning("%s: too many requests; retrying in %.1f s", what, delay)
            except NetworkError as exc:
                delay = backoff.next_delay()
                log.warning("%s failed (%s); retrying in %.1f s", what, exc, delay)
            self._sleep(max(MIN_INTERVAL_S, delay))

    def _poll(self, registration: int, key: str, poll_s: float) -> int:
        while True:
            answer = self._call("poll", self.client.poll, registration, key)
            poll_s = interval(answer.get("poll_s"), poll_s)
            task = answer.get("task")
            if isinstance(task, dict):
                task_id, kind = str(task.get("id") or ""), str(task.get("kind") or "")
                if kind == "poweroff":
                    log.info("task %s: power off", task_id)
                    self._call("done", self.client.done, registration, key, task_id)
                    self.host.poweroff()
                    return EXIT_DONE
                if kind == "inventory":
                    log.info("task %s: inventory", task_id)
                    facts = self._facts()
                    self._call("facts", self.client.facts, registration, key, task_id, facts)
                    continue
                log.warning("task %s: no task %r in discovery mode; reported and ignored", task_id, kind)
                self._call("done", self.client.done, registration, key, task_id, "UnknownTaskKind")
            elif task is not None:
                log.error("the control plane sent a task that is not an object: %r", task)
            self._sleep(jittered(poll_s, self.rng))


def _first_linked_mac(facts: dict) -> str:
    nics = [nic for nic in facts.get("nics", []) if nic.get("link")] or facts.get("nics", [])
    return str(nics[0]["mac"]) if nics else ""
