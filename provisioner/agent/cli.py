"""Command line of the agent: `python -m provisioner.agent` or `python3 provisioner-agent.pyz`.

The URL and the boot credential come from the kernel command line (`provisioner.url=`, `provisioner.token=`)
unless given here. Prefer --token-file or PROVISIONER_TOKEN to --token: arguments are visible to everyone in
`ps`. The boot credential is good for one registration, whose answer hands over the agent token; the agent keeps
that in its state directory (provisioner/agent/credentials.py).

With `provisioner.mode=discover` on the kernel command line (or --discover) there is no token: the agent runs
discovery mode (provisioner/agent/discovery.py), announcing a machine not yet in inventory.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from provisioner.agent import AGENT_VERSION
from provisioner.agent.client import Client
from provisioner.agent.discovery import DEFAULT_LLDP_S, Discovery, DiscoveryClient, boot_mac
from provisioner.agent.host import Host, RealHost, SandboxHost
from provisioner.agent.loop import Agent

log = logging.getLogger("provisioner.agent")

DEFAULT_STATE_DIR = Path("/run/provisioner-agent")
TOKEN_ENV = "PROVISIONER_TOKEN"
EXIT_USAGE = 2
# Discovery listens for LLDP before it registers; past this the machine waits too long to be seen.
MAX_LLDP_S = 300


class ConfigError(Exception):
    pass


@dataclass
class Config:
    url: str
    token: str = field(repr=False)
    state_dir: Path
    sandbox: Path | None
    discover: bool = False
    mac: str = ""  # discovery: the booting NIC's, from BOOTIF=
    lldp_s: float = DEFAULT_LLDP_S


def parse_cmdline(text: str) -> dict[str, str]:
    """`key=value` pairs of a kernel command line; the kernel allows double quotes around values."""
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    return dict(word.split("=", 1) for word in words if "=" in word)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="provisioner-agent",
        description="Pulls install tasks from the provisioner control plane and runs them on this machine.",
        epilog=f"The token is read from --token-file, then ${TOKEN_ENV}, then --token, then the kernel command "
        "line. Exit status: 0 done (plan over, rebooting, or cancelled), 3 install ended (401), "
        "4 refused (not this install's machine, or its boot credential already used), 5 stopped, 6 rejected, 2 usage. "
        "Discovery mode: 0 powered off (or rebooting: the machine is known), 3 registration gone (401), "
        "4 refused (403, 409), 6 rejected (400, 413).",
    )
    parser.add_argument("--url", help="site base URL (default: provisioner.url= on the kernel command line)")
    parser.add_argument("--token-file", type=Path, help="file holding the install token")
    parser.add_argument("--token", help=f"install token (visible in ps; prefer --token-file or ${TOKEN_ENV})")
    parser.add_argument("--cmdline", type=Path, default=Path("/proc/cmdline"), help="kernel command line to read")
    parser.add_argument("--state-dir", type=Path, help=f"journal directory (default {DEFAULT_STATE_DIR})")
    parser.add_argument(
        "--sandbox",
        type=Path,
        metavar="DIR",
        help="sandbox mode: disks are DIR/disks/<name>.img, the target root is DIR/target, reboot is recorded",
    )
    parser.add_argument(
        "--discover",
        action="store_true",
        help="discovery mode, without a token (default: provisioner.mode=discover on the kernel command line)",
    )
    parser.add_argument(
        "--lldp-s",
        type=float,
        help=f"discovery: seconds to listen for LLDP (default: provisioner.lldp_s=, else {DEFAULT_LLDP_S:g})",
    )
    parser.add_argument("--target", type=Path, help="target root already mounted here (default: found and mounted)")
    parser.add_argument("--poll-wait", type=int, default=25, help="long-poll wait in seconds (at most 30)")
    parser.add_argument("--backoff-base", type=float, default=1.0, help="first retry delay in seconds")
    parser.add_argument("--backoff-cap", type=float, default=60.0, help="longest retry delay in seconds")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--version", action="version", version=f"provisioner-agent {AGENT_VERSION}")
    return parser


def resolve_config(args: argparse.Namespace, environ: dict[str, str]) -> Config:
    try:
        kernel = parse_cmdline(args.cmdline.read_text())
    except OSError:
        kernel = {}
    url = args.url or kernel.get("provisioner.url", "")
    if not url.startswith(("http://", "https://")):
        raise ConfigError("no control plane URL: pass --url or boot with provisioner.url=")
    sandbox = args.sandbox.resolve() if args.sandbox is not None else None
    state_dir = args.state_dir or (sandbox / "state" if sandbox is not None else DEFAULT_STATE_DIR)
    if args.discover or kernel.get("provisioner.mode") == "discover":
        return Config(url, "", state_dir, sandbox, discover=True, mac=boot_mac(kernel), lldp_s=_lldp_s(args, kernel))
    if args.token_file is not None:
        try:
            token = args.token_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read --token-file {args.token_file}: {exc.strerror}") from None
    else:
        token = environ.get(TOKEN_ENV) or args.token or kernel.get("provisioner.token", "")
    if not token:
        raise ConfigError(f"no token: pass --token-file, set ${TOKEN_ENV}, or boot with provisioner.token=")
    return Config(url=url, token=token, state_dir=state_dir, sandbox=sandbox)


def _lldp_s(args: argparse.Namespace, kernel: dict[str, str]) -> float:
    if args.lldp_s is not None:
        seconds, given = args.lldp_s, f"--lldp-s {args.lldp_s:g}"
    else:
        text = kernel.get("provisioner.lldp_s", str(DEFAULT_LLDP_S))
        given = f"provisioner.lldp_s={text}"
        try:
            seconds = float(text)
        except ValueError:
            raise ConfigError(f"{given} is not a number of seconds") from None
    if not 0 <= seconds <= MAX_LLDP_S:
        raise ConfigError(f"{given}: seconds to listen for LLDP must be from 0 to {MAX_LLDP_S}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = resolve_config(args, dict(os.environ))
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    # Children (scripts, tools) must not inherit the token.
    os.environ.pop(TOKEN_ENV, None)
    if args.token and config.token == args.token:
        log.warning("the token was given with --token, where any user can read it in ps; prefer --token-file")
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    host: Host
    if config.sandbox is not None:
        host = SandboxHost(config.sandbox)
        log.info("sandbox mode in %s", config.sandbox)
    else:
        host = RealHost(config.state_dir, args.target)
    if config.discover:
        discovery = Discovery(
            DiscoveryClient(config.url),
            host,
            config.state_dir,
            mac=config.mac,
            lldp_s=config.lldp_s,
            backoff_base_s=args.backoff_base,
            backoff_cap_s=args.backoff_cap,
        )
        signal.signal(signal.SIGTERM, lambda *_: discovery.stop())
        log.info("provisioner agent %s in discovery mode, talking to %s", AGENT_VERSION, config.url)
        return discovery.run()
    agent = Agent(
        Client(config.url, config.token),
        host,
        config.state_dir,
        poll_wait_s=args.poll_wait,
        backoff_base_s=args.backoff_base,
        backoff_cap_s=args.backoff_cap,
    )
    signal.signal(signal.SIGTERM, lambda *_: agent.stop())
    log.info("provisioner agent %s talking to %s", AGENT_VERSION, config.url)
    return agent.run()
