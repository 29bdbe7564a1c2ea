"""The figures, read from the database (the truth) and from what the clients saw, and the verdict.

Goal: stuck 0, lost events 0, unexpected websocket closes 0, armed 0, every periodic job on time, every
deadline that was set up to fire fired, every failed install has a reason, /healthz healthy at the end.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from .faults import FaultPlan

if TYPE_CHECKING:
    from .sockets import LiveSocket

# A periodic job is on time when no gap between two runs (or between the start or end of the watch and the
# nearest run) exceeds two periods plus this: a worker restart (2 s) and a Redis restart cost a few seconds.
PERIODIC_SLACK_S = 10.0
# The faults a websocket close may follow and still be caused by the run: a restarted daphne closes its
# sockets, there is no way around that. A Redis or database restart has no such excuse: a consumer can
# wait for its channel layer to come back, as the scheduler waits for its Redis.
CLOSES_EXCUSED_BY = ("daphne-restart",)


def deadline_figures(installs: dict) -> dict:
    silent = installs["faulty"]["soak-silent"]
    return {"expected": silent["requested"], "seen": silent["failed_as_expected"]}


def socket_figures(sockets: dict[str, LiveSocket], stored: dict[str, list[int]], plan: FaultPlan) -> dict:
    """``stored``: for each socket, the ids of the events stored in its stream above its starting point."""
    excused = [w for kind in CLOSES_EXCUSED_BY for w in plan.windows(kind)]
    per_socket, lost_total, dup_total, unexpected = {}, 0, 0, []
    for name, sock in sockets.items():
        stored_ids = set(stored[name])
        lost = stored_ids - set(sock.received)
        dups = sum(n - 1 for n in sock.received.values() if n > 1)
        closes = [c for c in sock.closes if not any(a <= c.at <= b for a, b in excused)]
        unexpected += [(name, c) for c in closes]
        lost_total += len(lost)
        dup_total += dups
        per_socket[name] = {
            "stored": len(stored_ids), "received": len(sock.received), "lost": len(lost), "duplicates": dups,
            "closes": len(sock.closes), "unexpected_closes": len(closes), "reconnects": sock.connects - 1,
        }  # fmt: skip
    codes = Counter(str(c.code) for _, c in unexpected)
    near = Counter(_nearest_fault(plan, c.at) for _, c in unexpected)
    return {
        "sockets": len(sockets),
        "unexpected_closes": len(unexpected),
        "unexpected_close_codes": dict(codes),
        "unexpected_closes_after": dict(near),
        "closes_by_the_run": sum(len(s.closes) for s in sockets.values()) - len(unexpected),
        "lost": lost_total,
        "duplicates": dup_total,
        "resyncs": sum(s.resyncs for s in sockets.values()),
        "per_socket": per_socket,
    }


def _nearest_fault(plan: FaultPlan, at: float, within_s: float = 15.0) -> str:
    """The fault a close followed within ``within_s``, to tell a defect's closes from a fault's; "no fault"."""
    before = [f for f in plan.faults if f.done_at is not None and f.done_at <= at <= f.done_at + within_s]
    return max(before, key=lambda f: f.done_at).kind if before else "no fault"


def periodic_figures(runs: dict[str, list[float]], every_s: dict[str, float], start: float, end: float,
                     overdue_seen: dict[str, int]) -> dict:  # fmt: skip
    figures = {}
    for name, every in sorted(every_s.items()):
        if every <= 0:
            figures[name] = {"every_s": every, "on_time": False, "seen": 0, "expected": "?", "max_gap_s": None}
            continue
        times = sorted(t for t in runs.get(name, []) if start <= t <= end)
        expected = int((end - start) // every)
        points = [start, *times, end]
        max_gap = max(b - a for a, b in zip(points, points[1:], strict=False))
        figures[name] = {
            "every_s": every,
            "expected": expected,
            "seen": len(times),
            "max_gap_s": round(max_gap, 1),
            # Two runs within half a period: the job ran twice (two schedulers, or a re-run after a restart).
            "doubled": sum(1 for a, b in zip(times, times[1:], strict=False) if b - a < every / 2),
            "overdue_reported": overdue_seen.get(name, 0),
            "on_time": len(times) >= expected - 1 and max_gap <= 2 * every + PERIODIC_SLACK_S,
        }
    return figures


def verdict(figures: dict) -> tuple[bool, list[str]]:
    """Whether every goal figure is met, and the ones that are not."""
    misses = []
    inst = figures["installs"]
    if inst["stuck"]:
        misses.append(f"{inst['stuck']} install(s) stuck")
    if inst["failed_without_reason"]:
        misses.append(f"{inst['failed_without_reason']} failed install(s) without a reason")
    if figures["deadline_failures"]["seen"] != figures["deadline_failures"]["expected"]:
        d = figures["deadline_failures"]
        misses.append(f"deadline failures: {d['seen']} seen of {d['expected']} expected")
    for hostname, f in inst["faulty"].items():
        if f["requested"] == 0:
            misses.append(f"no install was requested on {hostname}")
    ws = figures["websockets"]
    if ws["lost"]:
        misses.append(f"{ws['lost']} event(s) stored but never received")
    if ws["unexpected_closes"]:
        misses.append(f"{ws['unexpected_closes']} websocket close(s) not caused by the run")
    if figures["armed"]:
        misses.append(f"{figures['armed']} per-MAC config(s) armed for ended installs")
    for name, p in figures["periodic"].items():
        if not p["on_time"]:
            misses.append(f"periodic {name}: {p['seen']} runs of {p['expected']} expected, max gap {p['max_gap_s']} s")
    if not figures["periodic"]:
        misses.append("no periodic job known")
    if not figures["healthz_ok_at_end"]:
        misses.append("/healthz not healthy at the end")
    return not misses, misses
