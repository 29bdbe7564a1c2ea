"""`make run`: set up a development database and demo site, then run the dashboard, the scheduler, an
RQ worker and (unless REDIS_URL is given) a private Redis, until Ctrl-C stops them all."""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
BIN = Path(sys.executable).parent


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


LAB_BMC_BASE_PORT = 16230  # fixed, so the BMC ports stored in the database stay right across runs
LAB_IMAGE_PORT = 16299


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
            "--bmc-base-port", str(LAB_BMC_BASE_PORT),
            "--image-port", str(LAB_IMAGE_PORT),
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

    VAR.mkdir(exist_ok=True)
    env = {**os.environ, "PROVISIONER_DEV": "1", "PYTHONUNBUFFERED": "1"}
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

        supervisor.start(
            "daphne",
            [str(BIN / "python"), "-m", "provisioner.serve", "-b", "127.0.0.1", "-p", str(args.port)],
            env,
        )
        supervisor.start("scheduler", [str(BIN / "python"), "manage.py", "scheduler"], env)
        supervisor.start("rq worker", [str(BIN / "python"), "manage.py", "worker"], env)
        url = f"http://127.0.0.1:{args.port}/"
        wait_for(lambda: healthy(url + "login/") or supervisor.first_exited() is not None, 30, "daphne")
        if supervisor.first_exited() is None:
            say(f"provisioner is running at {url} (log in as admin). Ctrl-C stops everything.")
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
        supervisor.stop()


if __name__ == "__main__":
    sys.exit(main())
