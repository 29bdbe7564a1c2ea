"""`make run`: set up a development database and demo site, then run the dashboard, the scheduler, an
RQ worker and (unless REDIS_URL is given) a private Redis, until Ctrl-C stops them all.

While it runs, var/run.env says how to reach its stack, so `manage.py` commands typed next to it
(`.venv/bin/python manage.py installs`) use the same database and Redis."""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("PROVISIONER_VAR_DIR") or ROOT / "var")
BIN = Path(sys.executable).parent
RUN_ENV = VAR / "run.env"  # read by manage.py (config/devstack.py)


def say(message: str) -> None:
    print(f"[run] {message}", flush=True)


def ensure_redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        say("redis-server is missing; installing Debian's redis-server package ...")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=True, env=env)
        found = shutil.which("redis-server")
        if found:
            return found
    sys.exit(
        "redis-server is not installed and could not be installed automatically.\n"
        "Install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis),\n"
        "or point provisioner at a running Redis: REDIS_URL=redis://host:6379/0 make run"
    )


class Supervisor:
    """Children run in their own sessions so that Ctrl-C reaches only us, and we stop them
    in order and wait for each: nothing is left behind."""

    def __init__(self):
        self.children: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], env: dict, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, start_new_session=True, **kwargs)
        self.children.append((name, proc))
        return proc

    def stop(self) -> None:
        # Last started, first stopped, each waited for: the worker still needs Redis while
        # it shuts down.
        for name, proc in reversed(self.children):
            if proc.poll() is None:
                say(f"stopping {name} (pid {proc.pid})")
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()

    def first_exited(self):
        for name, proc in self.children:
            if proc.poll() is not None:
                return name, proc.returncode
        return None


def manage(env: dict, *args: str) -> None:
    subprocess.run([str(BIN / "python"), "manage.py", *args], env=env, cwd=ROOT, check=True)


def wait_for(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise SystemExit(f"{what} did not come up within {seconds:.0f} s")


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


# The lab's BMCs listen on UDP ports BASE..BASE+38 (36 machines in inventory, 3 it discovers), its image
# server on TCP BASE+69, its jump host on TCP BASE+70 and every installed machine's sshd on TCP BASE+71 of its own
# address (127.77.<rack>.<n>). Fixed (load_demo stores them), and movable with LAB_PORT_BASE when another program
# holds them.
LAB_PORT_BASE = int(os.environ.get("LAB_PORT_BASE", 16230))
LAB_MACHINES = 39
LAB_IMAGE_PORT = LAB_PORT_BASE + 69
LAB_JUMP_PORT = LAB_PORT_BASE + 70
LAB_SSH_PORT = LAB_PORT_BASE + 71
LAB_FIRST_MACHINE = "127.77.1.1"


def port_taken(port: int, kind: int = socket.SOCK_STREAM, address: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((address, port))
        except OSError:
            return True
    return False


def already_running() -> str | None:
    """The URL of a `make run` already running from this checkout, or None."""
    from config.devstack import read_run_env

    values = read_run_env(RUN_ENV)
    return values.get("PROVISIONER_URL", "?") if values else None


def preflight(port: int, lab: bool) -> None:
    """Say which port is taken and what to do, before starting anything (a second `make run` used to
    stop with a bare `Error 1`)."""
    url = already_running()
    if url:
        raise SystemExit(
            f"make run is already running from this checkout ({url}). Use that one, or stop it (Ctrl-C in its "
            "terminal) first."
        )
    if port_taken(port):
        raise SystemExit(
            f"TCP port {port} (the dashboard) is in use on 127.0.0.1, by another `make run` or another program. "
            f"Stop it, or choose another port: PORT={port + 1} make run"
        )
    if not lab:
        return
    taken = [p for p in range(LAB_PORT_BASE, LAB_PORT_BASE + LAB_MACHINES) if port_taken(p, socket.SOCK_DGRAM)]
    taken += [p for p in (LAB_IMAGE_PORT, LAB_JUMP_PORT) if port_taken(p)]
    # Where 127.77.x.y cannot be bound at all (macOS), the lab runs without SSH; only a port in use matters.
    if port_taken(LAB_SSH_PORT, address=LAB_FIRST_MACHINE) and not port_taken(0, address=LAB_FIRST_MACHINE):
        taken.append(LAB_SSH_PORT)
    if taken:
        raise SystemExit(
            f"The simulated datacentre needs UDP ports {LAB_PORT_BASE}-{LAB_PORT_BASE + LAB_MACHINES - 1} (its BMCs) "
            f"and TCP ports {LAB_IMAGE_PORT} (its images), {LAB_JUMP_PORT} (its jump host) on 127.0.0.1 and "
            f"{LAB_SSH_PORT} on 127.77.x.y (its machines' SSH); port {taken[0]} is in use, probably by "
            f"another `make run`'s lab. Stop it, or move this one: LAB_PORT_BASE={LAB_PORT_BASE + 100} make run "
            "(or PROVISIONER_LAB=0 make run for fake BMCs and no lab)."
        )


def write_run_env(env: dict, port: int) -> None:
    """What terminal commands need to reach this stack, for manage.py; removed when we stop."""
    keys = ["PROVISIONER_DEV", "REDIS_URL", "DATABASE_URL"] + [k for k in env if k.startswith("INSTALL_")]
    lines = [f"MAKE_RUN_PID={os.getpid()}", f"PROVISIONER_URL=http://127.0.0.1:{port}/"]
    lines += [f"{k}={env[k]}" for k in keys if env.get(k)]
    tmp = RUN_ENV.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.chmod(0o600)
    tmp.replace(RUN_ENV)


def start_lab(supervisor: Supervisor, env: dict, port: int) -> Path:
    """Start the simulated datacentre (real IPMI BMCs on loopback, machines that PXE-boot from the
    demo site's TFTP root) and wait for its inventory file, which it writes once it is up."""
    state = VAR / "lab"
    inventory = state / "inventory.json"
    inventory.unlink(missing_ok=True)
    supervisor.start(
        "lab",
        [
            str(BIN / "python"), "-m", "provisioner.lab",
            "--preset", "demo",
            "--state-dir", str(state),
            "--bmc-base-port", str(LAB_PORT_BASE),
            "--image-port", str(LAB_IMAGE_PORT),
            "--jump-port", str(LAB_JUMP_PORT),
            "--ssh-port", str(LAB_SSH_PORT),
            "--base-url", f"http://127.0.0.1:{port}",
        ],
        env,
    )
    wait_for(lambda: inventory.exists() or supervisor.first_exited() is not None, 60, "the simulated datacentre")
    if supervisor.first_exited() is not None:
        raise SystemExit("the simulated datacentre could not start (see its output above)")
    return inventory


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
    parser.add_argument(
        "--no-lab",
        action="store_true",
        default=os.environ.get("PROVISIONER_LAB") == "0",
        help="No simulated datacentre: a small demo site with fake BMCs (PROVISIONER_LAB=0 does the same).",
    )
    args = parser.parse_args()

    VAR.mkdir(parents=True, exist_ok=True)
    preflight(args.port, lab=not args.no_lab)
    env = {**os.environ, "PROVISIONER_DEV": "1", "PYTHONUNBUFFERED": "1"}
    # The dashboard as a technician gets it: a mistyped address is the product's "not found" page, not Django's
    # debug page (which lists every URL and settings, and whose inline styles the CSP blocks). DEBUG=1 make run
    # for the debug pages.
    env.setdefault("DEBUG", "0")
    supervisor = Supervisor()
    # Ctrl-C, and SIGTERM from a service manager or `kill`, stop everything. SIGINT is set
    # explicitly because a shell that starts us in the background leaves it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        if not env.get("REDIS_URL"):
            socket_path = VAR / "redis.sock"
            socket_path.unlink(missing_ok=True)
            redis_server = ensure_redis_server()
            supervisor.start(
                "redis",
                [
                    redis_server,
                    "--port",
                    "0",
                    "--unixsocket",
                    str(socket_path),
                    "--unixsocketperm",
                    "700",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(VAR),
                    "--logfile",
                    str(VAR / "redis.log"),
                ],
                env,
            )
            wait_for(socket_path.exists, 10, "redis-server")
            env["REDIS_URL"] = f"unix://{socket_path}?db=0"
            say(f"started a private Redis on {socket_path}")
        else:
            say("using REDIS_URL from the environment")

        # The demo's machine pages show sensors and the event log within a minute, not a quarter of an hour.
        env.setdefault("HEALTH_SYNC_INTERVAL_S", "60")
        manage(env, "migrate", "--noinput", "-v", "0")
        manage(env, "ensure_admin")
        if args.no_lab:
            manage(env, "load_demo", "--base-url", f"http://127.0.0.1:{args.port}")
        else:
            # Simulated machines boot in seconds: a demo should not wait an hour to show a timeout.
            for name, seconds in (
                ("INSTALL_BOOT_DEADLINE_S", 120),
                ("INSTALL_INSTALLER_DEADLINE_S", 300),
                ("INSTALL_VERIFY_DEADLINE_S", 120),
            ):
                env.setdefault(name, str(seconds))
            inventory = start_lab(supervisor, env, args.port)
            manage(env, "load_demo", "--lab-inventory", str(inventory))
            manage(env, "load_demo_workflows")

        supervisor.start(
            "daphne",
            [str(BIN / "python"), "-m", "config.serve", "-b", "127.0.0.1", "-p", str(args.port)],
            env,
        )
        supervisor.start("scheduler", [str(BIN / "python"), "manage.py", "scheduler"], env)
        supervisor.start("rq worker", [str(BIN / "python"), "manage.py", "worker"], env)
        url = f"http://127.0.0.1:{args.port}/"
        wait_for(lambda: healthy(url + "login/") or supervisor.first_exited() is not None, 30, "daphne")
        if supervisor.first_exited() is None:
            write_run_env(env, args.port)
            say(f"provisioner is running at {url} (log in as admin). Ctrl-C stops everything.")
            say("In another terminal, manage.py reaches this stack: .venv/bin/python manage.py installs")
        while (exited := supervisor.first_exited()) is None:
            time.sleep(0.5)
        name, code = exited
        say(f"{name} exited with status {code}; stopping the rest")
        return 1
    except KeyboardInterrupt:
        say("Ctrl-C: stopping")
        return 0
    except subprocess.CalledProcessError as exc:
        say(f"setup failed: {' '.join(map(str, exc.cmd[1:]))} exited with status {exc.returncode}")
        return 1
    finally:
        RUN_ENV.unlink(missing_ok=True)
        supervisor.stop()


if __name__ == "__main__":
    sys.exit(main())
