"""A distribution installer played by the lab: fetch the rendered answer file the way the installer does, then
make exactly the HTTP calls its hooks would make, in the order the installer runs them.

Nothing in the file is executed. The hooks (preseed early/late_command, kickstart %pre/%post, autoinstall
early/late-commands and the `reporting: webhook`) are read for their `wget`/`curl` calls, which are made with
urllib; every other command is only logged. A callback the file does not contain is never invented, so a
template that forgets one shows up as an install that never finishes.
"""

from __future__ import annotations

import json
import re
import shlex
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from provisioner.lab.firmware import BootKind, BootTarget, mask_cmdline

# The User-Agent each installer's fetcher sends, for logs on the control plane side.
USER_AGENTS = {
    BootKind.PRESEED: "Wget",  # debian-installer's busybox wget
    BootKind.KICKSTART: "anaconda/34.24",
    BootKind.AUTOINSTALL: "Cloud-Init/24.1",
}
HTTP_TIMEOUT_S = 10
FORM = "application/x-www-form-urlencoded"

# curl and wget options that take a value (the next word, unless given as --opt=value).
_CURL_VALUE_OPTS = {
    "-X", "--request", "-d", "--data", "--data-raw", "--data-binary", "--data-urlencode", "-H", "--header",
    "-o", "--output", "-m", "--max-time", "--retry", "--retry-delay", "--retry-max-time", "--connect-timeout",
    "-u", "--user", "-A", "--user-agent", "-w", "--write-out", "-K", "--config", "--cacert", "-e", "--referer",
}  # fmt: skip
_WGET_VALUE_OPTS = {
    "-O", "--output-document", "--post-data", "--body-data", "--method", "--header", "-T", "--timeout",
    "-t", "--tries", "--waitretry", "-U", "--user-agent", "-o", "--output-file", "-a", "--append-output",
}  # fmt: skip


@dataclass(frozen=True)
class HttpCall:
    """One HTTP request a hook makes."""

    method: str
    url: str
    body: bytes | None = None
    content_type: str = ""
    fail_on_http_error: bool = True
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class Hooks:
    """What the installer runs and when: commands before installing, after, and its webhook endpoints."""

    early: list[str] = field(default_factory=list)
    late: list[str] = field(default_factory=list)
    webhooks: list[str] = field(default_factory=list)
    error: list[str] = field(default_factory=list)  # run only when the install fails


# -- reading commands -------------------------------------------------------------------------------------------


def _simple_commands(command: str) -> list[list[str]]:
    # A line that is a comment is no command, whatever quotes it holds ("anaconda's syslog" would leave a
    # quote open for the lines after it). A '#' later in a line is left alone: it may be in a URL or sed.
    command = "\n".join(line for line in command.splitlines() if not line.lstrip().startswith("#"))
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        tokens = list(lexer)
    except ValueError:
        return []
    commands, current = [], []
    for token in tokens:
        if token and set(token) <= set(";&|"):
            if current:
                commands.append(current)
            current = []
        else:
            current.append(token)
    if current:
        commands.append(current)
    return commands


def _options(words: list[str], with_value: set[str]) -> tuple[list[tuple[str, str]], list[str]]:
    options, operands = [], []
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("--") and "=" in word:
            name, _, value = word.partition("=")
            options.append((name, value))
        elif word in with_value and i + 1 < len(words):
            options.append((word, words[i + 1]))
            i += 1
        elif word.startswith("-") and len(word) > 1 and not word.startswith("--"):
            # Bundled short flags (-fsS, -qO-): a value-taking letter takes the rest of the word or the next word.
            letters = word[1:]
            for j, letter in enumerate(letters):
                flag = f"-{letter}"
                if flag in with_value:
                    value = letters[j + 1 :]
                    if not value and i + 1 < len(words):
                        i += 1
                        value = words[i]
                    options.append((flag, value))
                    break
                options.append((flag, ""))
        elif word.startswith("--"):
            options.append((word, ""))
        else:
            operands.append(word)
        i += 1
    return options, operands


def _curl(args: list[str]) -> HttpCall | None:
    options, operands = _options(args, _CURL_VALUE_OPTS)
    urls = [o for o in operands if o.startswith(("http://", "https://"))]
    if not urls:
        return None
    data = [v for k, v in options if k in ("-d", "--data", "--data-raw", "--data-binary", "--data-urlencode")]
    method = next((v for k, v in options if k in ("-X", "--request")), "POST" if data else "GET")
    headers = tuple(
        (name.strip(), value.strip())
        for k, v in options
        if k in ("-H", "--header")
        for name, _, value in [v.partition(":")]
    )
    content_type = next((v for n, v in headers if n.lower() == "content-type"), FORM if data else "")
    return HttpCall(
        method=method.upper(),
        url=urls[0],
        body="&".join(data).encode() if data else (b"" if method.upper() == "POST" else None),
        content_type=content_type,
        fail_on_http_error=any(k in ("-f", "--fail") for k, _ in options),
        headers=tuple((n, v) for n, v in headers if n.lower() != "content-type"),
    )


def _wget(args: list[str]) -> HttpCall | None:
    options, operands = _options(args, _WGET_VALUE_OPTS)
    urls = [o for o in operands if o.startswith(("http://", "https://"))]
    if not urls:
        return None
    data = next((v for k, v in options if k in ("--post-data", "--body-data")), None)
    method = next((v for k, v in options if k == "--method"), "POST" if data is not None else "GET")
    return HttpCall(
        method=method.upper(),
        url=urls[0],
        body=None if data is None else data.encode(),
        content_type=FORM if data is not None else "",
        fail_on_http_error=True,
    )


def http_calls(command: str) -> list[HttpCall]:
    """The wget/curl requests a shell command makes, in order; other commands are not HTTP and are skipped."""
    calls = []
    for words in _simple_commands(command):
        # `in-target curl ...`, `env X=1 wget ...`: the program is the first curl or wget word.
        for i, word in enumerate(words):
            name = word.rsplit("/", 1)[-1]
            if name in ("curl", "wget"):
                call = (_curl if name == "curl" else _wget)(words[i + 1 :])
                if call is not None:
                    calls.append(call)
                break
    return calls


# -- reading answer files ---------------------------------------------------------------------------------------


def preseed_hooks(text: str) -> Hooks:
    # debconf joins a line ending in a backslash with the next one.
    joined = re.sub(r"\\\r?\n", " ", text)
    hooks = Hooks()
    for line in joined.splitlines():
        if line.lstrip().startswith("#"):
            continue
        parts = line.split(None, 3)
        if len(parts) < 4:
            continue
        question, value = parts[1], parts[3]
        if question == "preseed/early_command":
            hooks.early.append(value)
        elif question == "preseed/late_command":
            hooks.late.append(value)
    return hooks


def kickstart_hooks(text: str) -> Hooks:
    hooks = Hooks()
    section: list[str] | None = None
    body: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if section is None:
            word = stripped.split()[0] if stripped.startswith("%") else ""
            if word in ("%pre", "%pre-install"):
                section = hooks.early
            elif word == "%post":
                section = hooks.late
            elif word == "%onerror":
                section = hooks.error
            elif word.startswith("%") and word != "%end":
                section = []  # %packages, %addon: no commands
            body = []
            continue
        if stripped == "%end":
            section.append("\n".join(body))
            section = None
            continue
        body.append(line)
    return hooks


def _yaml_scalar(text: str) -> str:
    text = text.strip()
    if text.startswith('"'):
        try:
            return str(json.loads(text))
        except ValueError:
            return text.strip('"')
    if text.startswith("'") and text.endswith("'") and len(text) >= 2:
        return text[1:-1].replace("''", "'")
    return text


def autoinstall_hooks(text: str) -> Hooks:
    """early-commands, late-commands and webhook endpoints of an autoinstall user-data file.

    A line reader for the block styles autoinstall files use: no YAML library is needed in the lab.
    """
    hooks = Hooks()
    lines = text.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)(early-commands|late-commands|error-commands):\s*$", line)
        if match:
            indent = len(match.group(1))
            target = {"early-commands": hooks.early, "late-commands": hooks.late}.get(match.group(2), hooks.error)
            for item in lines[i + 1 :]:
                if not item.strip() or item.lstrip().startswith("#"):
                    continue
                item_indent = len(item) - len(item.lstrip())
                stripped = item.strip()
                if item_indent < indent or (item_indent == indent and not stripped.startswith("- ")):
                    break
                if stripped.startswith("- "):
                    target.append(_yaml_scalar(stripped[2:]))
            continue
        match = re.match(r"^(\s*)type:\s*['\"]?webhook['\"]?\s*$", line)
        if match:
            indent = len(match.group(1))
            for sibling in _sibling_lines(lines, i, indent):
                key, _, value = sibling.strip().partition(":")
                if key == "endpoint" and value.strip():
                    hooks.webhooks.append(_yaml_scalar(value))
    return hooks


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip())


def _sibling_lines(lines: list[str], at: int, indent: int) -> list[str]:
    """Lines of the same mapping as line `at` (same indent, no shallower line in between)."""
    out = []
    for step in (-1, 1):
        j = at + step
        while 0 <= j < len(lines):
            line = lines[j]
            if line.strip() and not line.lstrip().startswith("#"):
                if _indent_of(line) < indent:
                    break
                if _indent_of(line) == indent:
                    out.append(line)
            j += step
    return out


def answer_urls(target: BootTarget) -> list[str]:
    """What the installer fetches, in its order: cloud-init reads meta-data, user-data, then vendor-data."""
    url = target.answer_url
    if not url:
        return []
    if target.kind is BootKind.AUTOINSTALL:
        return [f"{url}meta-data", f"{url}user-data", f"{url}vendor-data"]
    return [url]


def hooks_for(kind: BootKind, text: str) -> Hooks:
    if kind is BootKind.PRESEED:
        return preseed_hooks(text)
    if kind is BootKind.KICKSTART:
        return kickstart_hooks(text)
    return autoinstall_hooks(text)


# -- running ----------------------------------------------------------------------------------------------------


def mask_url(url: str) -> str:
    return mask_cmdline(url)


class Stopped(Exception):
    """The machine lost power or was reset while the installer ran."""


class InstallFailed(Exception):
    """Raised by the machine's disk check: the installer cannot install on this hardware."""


# (event_type, name, description) as curtin and subiquity report them through the webhook handler.
WEBHOOK_EVENTS = [
    ("start", "subiquity/Install/install/partitioning", "configuring storage"),
    ("finish", "subiquity/Install/install/partitioning", "configuring storage"),
    ("start", "subiquity/Install/install/extract", "installing system"),
    ("finish", "subiquity/Install/install/extract", "installing system"),
    ("start", "subiquity/Install/install/curthooks", "configuring installed system"),
    ("finish", "subiquity/Install/install/curthooks", "configuring installed system"),
]


@dataclass
class InstallerRun:
    """One installer run on a machine; `run()` returns True when the installer finished and reboots."""

    target: BootTarget
    log: Callable[[str], None]
    on_installed: Callable[[str], None]
    stop: threading.Event = field(default_factory=threading.Event)
    install_s: float = 5.0
    #: Raises InstallFailed when the hardware cannot take the install (a disk too small).
    check_disk: Callable[[], None] = lambda: None
    #: Hangs after the early hooks (a kernel panic, a prompt nobody answers): only a deadline ends it.
    silent: bool = False
    #: Appends text to a file of the installed root (a path inside it): the late hooks' `echo KEY >> FILE`.
    append_target: Callable[[str, str], None] | None = None
    #: Every request made, as (method, URL, status or error); tests read it.
    requests: list[tuple[str, str, str]] = field(default_factory=list)

    def _pause(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise Stopped

    def _request(self, call: HttpCall) -> tuple[bool, bytes]:
        if self.stop.is_set():
            raise Stopped
        req = urllib.request.Request(call.url, data=call.body, method=call.method)
        req.add_header("User-Agent", USER_AGENTS.get(self.target.kind, "lab"))
        if call.content_type:
            req.add_header("Content-Type", call.content_type)
        for name, value in call.headers:
            req.add_header(name, value)
        try:
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:
                status, data, ok = str(resp.status), resp.read(), True
        except urllib.error.HTTPError as exc:
            status, data, ok = str(exc.code), exc.read() or b"", not call.fail_on_http_error
        except (urllib.error.URLError, OSError) as exc:
            status, data, ok = f"error: {getattr(exc, 'reason', exc)}", b"", False
        self.requests.append((call.method, call.url, status))
        self.log(f"{call.method} {mask_url(call.url)} -> {status}")
        return ok, data

    def _run_commands(self, where: str, commands: list[str], *, installed: bool = False) -> None:
        for command in commands:
            calls = http_calls(command)
            self.log(f"{where}: {len(calls)} HTTP call(s)")
            for call in calls:
                self._request(call)
            if installed and self.append_target is not None:
                self._appends(command)

    def _appends(self, command: str) -> None:
        """`echo WORD >> FILE` into the installed system (the stock templates' authorized_keys lines). Under
        /target for debian-installer's and curtin's late commands; kickstart's %post runs inside the system."""
        prefix = "" if self.target.kind is BootKind.KICKSTART else "/target/"
        for words in _simple_commands(command):
            if len(words) == 4 and words[0] == "echo" and words[2] == ">>" and words[3].startswith(prefix or "/"):
                self.append_target(words[3][len(prefix) :].lstrip("/"), words[1] + "\n")

    def _webhook(self, endpoints: list[str], event_type: str, name: str, description: str) -> None:
        event = {
            "origin": "curtin",
            "timestamp": time.time(),
            "event_type": event_type,
            "name": name,
            "description": description,
            "level": "INFO",
        }
        if event_type == "finish":
            event["result"] = "SUCCESS"
        for endpoint in endpoints:
            body = json.dumps(event).encode()
            self._request(HttpCall("POST", endpoint, body, "application/json", fail_on_http_error=False))

    def run(self) -> bool:
        kind = self.target.kind
        self.log(f"{kind} installer started")
        text = ""
        for url in answer_urls(self.target):
            call = HttpCall("GET", url, fail_on_http_error=True)
            ok, data = self._request(call)
            if url.endswith("vendor-data"):
                continue  # optional for cloud-init
            if not ok:
                self.log(f"{kind} installer could not fetch {mask_url(url)}: it waits at an error screen")
                return False
            if not url.endswith("meta-data"):
                text = data.decode(errors="replace")
        hooks = hooks_for(kind, text)
        self._run_commands(f"{kind} early hook", hooks.early)
        if self.silent:
            self.log(f"{kind} installer hangs: no further request until the power is cut")
            self.stop.wait()
            raise Stopped
        try:
            self.check_disk()
        except InstallFailed as exc:
            self.log(f"{kind} installer failed: {exc}")
            # Only kickstart (%onerror) and autoinstall (error-commands) report a failure; debian-installer
            # waits at its error screen until the control plane's deadline passes.
            self._run_commands(f"{kind} error hook", hooks.error)
            return False
        steps = WEBHOOK_EVENTS if hooks.webhooks else [("", "", "")] * 3
        for event_type, name, description in steps:
            self._pause(self.install_s / len(steps))
            if name:
                self._webhook(hooks.webhooks, event_type, name, description)
        # The system is on the disk before the late hooks run (debian-installer's /target, anaconda's %post).
        self.on_installed(str(kind))
        self._run_commands(f"{kind} late hook", hooks.late, installed=True)
        self.log(f"{kind} installer finished: rebooting")
        return True
