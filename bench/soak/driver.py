"""The work during the soak: a steady stream of installs on the lab, and a watch on the periodic jobs.

The stream requests a batch of free machines every few seconds (a machine is free again once its install
ended) and, in batches of their own so one failing machine never pauses a batch of good ones, installs on the
faulty machines, each of which must fail with its own reason. Profiles rotate between the agent's image
install and the three installers, so both callback paths run.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from dataclasses import dataclass, field

from .api import Api, ApiError
from .sockets import LiveSocket
from .stack import FAULTY, say

IMAGE_PROFILE = "lab-demo-image"
INSTALLER_PROFILES = ["debian-12-preseed", "rocky-9-kickstart", "ubuntu-24.04-autoinstall"]
#: Each fault's install: the silent installer needs an installer profile, the others fail before or in the agent.
FAULTY_PROFILES = {"soak-badpass": IMAGE_PROFILE, "soak-smalldisk": IMAGE_PROFILE, "soak-silent": "debian-12-preseed"}


@dataclass
class Stream:
    api: Api
    machines: list[str]  # the good ones
    port: int
    session_key: str
    batch_size: int
    every_s: float
    watch_every: int  # one install in this many gets a socket of its own
    stop_deadline_faults_at: float  # monotonic: no silent install after this, so the drain stays short
    rng: random.Random
    sockets: list[LiveSocket] = field(default_factory=list)
    requested: int = 0
    refused: list[str] = field(default_factory=list)
    busy: set[str] = field(default_factory=set)
    _profiles = None

    async def run(self, until: float) -> None:
        self._profiles = itertools.cycle([IMAGE_PROFILE, INSTALLER_PROFILES[0], IMAGE_PROFILE, INSTALLER_PROFILES[1],
                                          IMAGE_PROFILE, INSTALLER_PROFILES[2]])  # fmt: skip
        while time.monotonic() < until:
            tick = time.monotonic()
            try:
                await self.tick()
            except ApiError as exc:
                say(f"stream: {exc}; trying again at the next tick")
            await asyncio.sleep(max(0.0, self.every_s - (time.monotonic() - tick)))

    async def active(self) -> list[dict]:
        return (await self.api.acall("GET", "/api/v1/installs?state=active&per_page=1000"))["results"]

    async def tick(self) -> None:
        self.busy = {i["machine"] for i in await self.active()}
        free = [m for m in self.machines if m not in self.busy]
        self.rng.shuffle(free)
        if free:
            await self.request(free[: self.batch_size], next(self._profiles))
        for hostname, profile in FAULTY_PROFILES.items():
            if hostname in self.busy:
                continue
            if FAULTY[hostname][1].endswith("Timeout") and time.monotonic() > self.stop_deadline_faults_at:
                continue
            await self.request([hostname], profile)

    async def request(self, hostnames: list[str], profile: str) -> None:
        body = {"machines": hostnames, "profile": profile, "name": f"soak {profile}", "stagger_s": 2}
        try:
            installs = (await self.api.acall("POST", "/api/v1/installs", body))["results"]
        except ApiError as exc:
            self.refused.append(str(exc))
            say(f"stream: install of {', '.join(hostnames)} not accepted: {exc}")
            return
        self.requested += len(installs)
        self.busy.update(hostnames)
        for install in installs:
            if install["id"] % self.watch_every == 0:
                path = f"/ws/installs/{install['id']}/"
                self.sockets.append(LiveSocket(f"install-{install['id']}", self.port, path, self.session_key).start())

    async def drain(self, limit_s: float) -> float:
        """Wait until no install is active, or ``limit_s`` passed; returns the seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < limit_s:
            try:
                if not await self.active():
                    break
            except ApiError:
                pass
            await asyncio.sleep(2)
        return time.monotonic() - started
