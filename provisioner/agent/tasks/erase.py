"""erase_disks: the data of the named disks made unreadable before a machine is released, and read back to show it.

Per disk, with method "auto": NVMe Format with user data erase when the controller supports it; else ATA secure
erase when the drive supports it and it is not frozen, locked or expired; else discard when the device supports it;
else writing zeros. "secure" allows only the first two, and fails before touching any disk that has neither;
"discard" starts at discard; "zero" only writes zeros. A way that fails is followed by the next (not under
"secure"). With "verify" (the default) each disk is read back at its first, middle and last MiB: data still
there is zeroed, once, and read back again; a disk that still reads non-zero fails the task, naming the disk and
the offset. Disks are erased at the same time, each in a thread of its own.

Output: {"disks": [{"path", "serial", "method", "fallback", "verified", "seconds"}, ...]}, in the order asked;
`method` is the way that left the disk reading zeros, `fallback` why the preferred way was not (or not alone)
used ("" when it was).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass

import provisioner.agent.tasks.params as p
from provisioner.agent import erase
from provisioner.agent.context import Context
from provisioner.agent.results import TaskAborted, TaskFailed
from provisioner.agent.tasks.disks import open_for_write, release

METHODS = ("auto", "secure", "discard", "zero")
SECURE = ("nvme_format", "ata_secure_erase")
# Zeroing reports progress at most this often per disk: a 16 TB disk writes 4 million chunks.
PROGRESS_EVERY_S = 1.0


@dataclass
class Report:
    path: str
    serial: str
    method: str
    fallback: str
    verified: bool
    seconds: float


@dataclass
class Plan:
    name: str
    device: str
    probe: erase.Probe
    method: str
    fallback: str


def _ata_blocked(ata: dict) -> str:
    """Why ATA secure erase cannot run on a drive that supports it, or ""."""
    if ata.get("frozen"):
        return ("ATA security is frozen (the firmware froze it at boot; a suspend and resume, or unplugging and "
                "replugging the drive, unfreezes it)")  # fmt: skip
    if ata.get("locked") or ata.get("enabled"):
        return "an ATA password this agent does not know is already set on the drive"
    if ata.get("expired"):
        return "the drive refuses ATA security commands until it is power-cycled (too many wrong passwords)"
    return ""


def choose(probe: erase.Probe, method: str) -> tuple[str, str]:
    """The way to erase a disk that can do what `probe` says, and why a better one was not chosen."""
    reasons = []
    if method in ("auto", "secure"):
        if probe.transport == "nvme":
            if probe.nvme_format:
                return "nvme_format", ""
            reasons.append(probe.why_not_nvme or "the NVMe controller does not support Format NVM")
        elif probe.ata.get("supported"):
            blocked = _ata_blocked(probe.ata)
            if not blocked:
                return "ata_secure_erase", ""
            reasons.append(blocked)
        else:
            reasons.append(f"the disk ({probe.transport}) offers neither NVMe format nor ATA secure erase")
    if method in ("auto", "secure", "discard"):
        if probe.discard:
            return "discard", "; ".join(reasons)
        reasons.append("the disk does not support discard")
    return "zero", "; ".join(reasons)


def _why_chosen(plan: Plan) -> str:
    if plan.fallback:
        return plan.fallback
    return {
        "nvme_format": "the NVMe controller supports Format NVM with user data erase",
        "ata_secure_erase": "ATA security is supported and not frozen, locked or expired",
        "discard": "asked for discard, and the disk supports it",
        "zero": "asked for zeroing",
    }[plan.method]


class _Progress:
    """Each disk's percent; the task's is their mean."""

    def __init__(self, ctx: Context, names: list[str]):
        self.ctx = ctx
        self.lock = threading.Lock()
        self.percents = dict.fromkeys(names, 0)

    def update(self, name: str, percent: int, message: str) -> None:
        with self.lock:
            self.percents[name] = percent
            overall = sum(self.percents.values()) // len(self.percents)
        self.ctx.progress(overall, f"{name}: {message}")


def _params(params: dict) -> tuple[list[str], str, bool]:
    names = p.text_list(params, "disks")
    if len(set(names)) != len(names):
        raise p.invalid("disks", "each disk may be named once")
    method = params.get("method", "auto")
    if method not in METHODS:
        raise p.invalid("method", f"one of {', '.join(METHODS)} is required")
    verify = params.get("verify", True)
    if not isinstance(verify, bool):
        raise p.invalid("verify", "true or false is required")
    return names, method, verify


def erase_disks(ctx: Context, params: dict) -> str:
    names, method, verify = _params(params)
    # Resolve all before touching any: a typo in the last name must not leave the first disks erased.
    devices = [(name, ctx.host.device(name)) for name in names]
    release(ctx, devices)
    eraser = ctx.host.eraser()
    serials = {disk["path"]: disk["serial"] for disk in ctx.host.facts()["disks"]}
    plans = []
    for name, device in devices:
        probe = eraser.probe(os.path.basename(name), device)
        plans.append(Plan(name, device, probe, *choose(probe, method)))
    if method == "secure":
        lacking = [f"{plan.name}: {plan.fallback}" for plan in plans if plan.method not in SECURE]
        if lacking:
            raise TaskFailed("SecureEraseUnavailable", "no secure erase for " + "; ".join(lacking))
    for plan in plans:
        ctx.log(f"{plan.name}: {plan.method} ({_why_chosen(plan)})")
    progress = _Progress(ctx, names)
    reports: dict[str, Report] = {}
    failures: list[TaskFailed] = []
    aborted = threading.Event()

    def work(plan: Plan) -> None:
        try:
            reports[plan.name] = _erase_one(ctx, eraser, plan, serials.get(plan.name, ""), method, verify, progress)
        except TaskAborted:
            aborted.set()
        except TaskFailed as exc:
            failures.append(exc)
        except Exception as exc:  # a bug or an OS error on one disk must not hide what happened to the others
            failures.append(TaskFailed("EraseFailed", f"{plan.name}: {type(exc).__name__}: {exc}"))

    threads = [threading.Thread(target=work, args=(plan,), name=f"erase-{plan.name}", daemon=True) for plan in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if aborted.is_set():
        ctx.check_abort()
    output = json.dumps({"disks": [asdict(reports[n]) for n in names if n in reports]}, sort_keys=True)
    if failures:
        message = "; ".join(exc.message for exc in failures)
        raise TaskFailed(failures[0].reason, message, output + "\n" + "\n".join(f.output for f in failures if f.output))
    ctx.progress(100, f"{len(names)} disk(s) erased" + (" and read back as zeros" if verify else ""))
    return output


def _erase_one(
    ctx: Context, eraser: erase.Eraser, plan: Plan, serial: str, method: str, verify: bool, progress: _Progress
) -> Report:
    started = time.monotonic()
    name, device = plan.name, plan.device
    reasons = [plan.fallback] if plan.fallback else []
    done = _apply(ctx, eraser, plan, method, reasons, progress)
    verified = False
    if verify:
        progress.update(name, 95, "reading back")
        offset = erase.first_nonzero(device)
        if offset is not None and done == "zero":
            raise TaskFailed("EraseNotVerified", f"{name} still reads non-zero data at byte {offset} after zeroing")
        if offset is not None:
            reasons.append(f"after {done} the disk still read data at byte {offset}, so it was zeroed")
            ctx.log(f"{name}: {reasons[-1]}")
            _zero(ctx, name, device, progress)
            done = "zero"
            offset = erase.first_nonzero(device)
            if offset is not None:
                raise TaskFailed("EraseNotVerified", f"{name} still reads non-zero data at byte {offset} after zeroing")
        verified = True
    seconds = round(time.monotonic() - started, 1)
    progress.update(name, 100, f"erased by {done} in {seconds:g} s" + (", read back as zeros" if verified else ""))
    ctx.log(f"{name}: erased by {done} in {seconds:g} s" + (", read back as zeros" if verified else ""))
    return Report(name, serial, done, "; ".join(reasons), verified, seconds)


def _apply(ctx: Context, eraser: erase.Eraser, plan: Plan, method: str, reasons: list[str], progress: _Progress) -> str:
    """Run the chosen way and, when it fails, the next ones; the way that ran."""
    chain = [plan.method]
    if method != "secure":
        chain += [m for m in ("discard", "zero") if m not in chain and (m != "discard" or plan.probe.discard)]
    for way in chain:
        ctx.check_abort()
        if way == "zero":
            _zero(ctx, plan.name, plan.device, progress)
            return way
        progress.update(plan.name, 10, f"{way.replace('_', ' ')} running")
        try:
            if way == "discard":
                eraser.discard(plan.device)
            else:
                getattr(eraser, way)(plan.device, plan.probe)
            return way
        except erase.EraseFailed as exc:
            if method == "secure":
                raise TaskFailed("EraseFailed", f"{plan.name}: {exc.message}", exc.output) from None
            reasons.append(f"{way} failed: {exc.message}")
            ctx.log(f"{plan.name}: {reasons[-1]}")
    raise AssertionError("the chain ends with zero")


def _zero(ctx: Context, name: str, device: str, progress: _Progress) -> None:
    last = [0.0]

    def report(done: int, total: int) -> None:
        ctx.check_abort()
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_S or done == total:
            last[0] = now
            percent = 10 + (done * 85 // total if total else 85)
            progress.update(name, percent, f"zeroing, {done >> 20} of {total >> 20} MiB")

    fd = open_for_write(device)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        erase.zero(fd, size, report)
    finally:
        os.close(fd)
