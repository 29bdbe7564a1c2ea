"""The soak's arithmetic: its verdict is only as good as the counting behind it (bench/soak)."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

from bench.soak import report
from bench.soak.faults import APART_S, FaultPlan
from bench.soak.periodic import PeriodicWatch

RQ_SWEEP = "2026-12-06 01:25:11,244 INFO rq.worker Worker 6d2b36: default: installs.sweeper.sweep() (install-sweeper)"


def test_the_fault_plan_kills_a_worker_every_minute_and_keeps_the_single_faults_apart_from_the_kills():
    plan = FaultPlan.for_duration(180)
    kills = [f.at for f in plan.faults if f.kind == "kill-worker"]
    singles = {f.kind: f.at for f in plan.faults if f.kind != "kill-worker"}
    assert kills == [60, 120]
    assert set(singles) == {"redis-restart", "postgres-terminate", "daphne-restart"}
    assert all(abs(at - k) >= APART_S for at in singles.values() for k in kills)
    assert all(0 < at < 180 for at in singles.values())


def test_periodic_runs_are_read_from_the_workers_log_lines_of_the_periodic_functions_only():
    watch = PeriodicWatch({"sweep": 15})
    watch.worker_line("worker-control", RQ_SWEEP)
    watch.worker_line("worker-control", "... Successfully completed installs.sweeper.sweep() job in 0:00:00.1s")
    watch.worker_line("worker-lab", "INFO rq.worker Worker 8e: site-lab: installs.engine.advance(7) (install-7-x)")
    watch.worker_line("worker-control", "Worker a6: default: installs.periodic.run('sweep') (periodic-sweep-119768142)")
    source, runs = watch.runs()
    assert source == "worker-logs" and len(runs["sweep"]) == 2 and "power_sync" not in runs


def test_periodic_runs_from_healthz_count_increments_and_survive_a_counter_that_starts_again():
    watch = PeriodicWatch({"sweep": 15, "power_sync": 30})
    for runs, last in [(4, "2026-12-06T01:00:00Z"), (5, "2026-12-06T01:00:15Z"), (5, "2026-12-06T01:00:15Z"),
                       (1, "2026-12-06T01:00:31Z"), (2, "2026-12-06T01:00:46Z")]:  # fmt: skip
        watch.health({"periodic": {"sweep": {"every_s": 20, "runs": runs, "last_run_at": last, "overdue": False}}})
    source, counted = watch.runs()
    assert source == "healthz"
    assert len(counted["sweep"]) == 4 + 3  # the 4 before the first poll, 4→5, the restart at 1, 1→2
    assert watch.every_s == {"sweep": 20}  # /healthz's word wins, and only its jobs are owed


def test_runs_healthz_missed_while_the_web_server_was_down_keep_the_times_the_worker_log_saw(monkeypatch):
    clock = iter([100.0, 101.0, 116.0, 131.0, 146.0, 150.0, 200.0])
    monkeypatch.setattr("bench.soak.periodic.time.monotonic", lambda: next(clock))
    watch = PeriodicWatch({"sweep": 15})  # 100: started
    poll = {"every_s": 15, "runs": 1, "last_run_at": "2026-12-06T01:00:00Z", "overdue": False}
    watch.health({"periodic": {"sweep": poll}})  # 101
    for _ in range(3):  # 116, 131, 146: the worker ran it while /healthz did not answer
        watch.worker_line("worker-control", RQ_SWEEP)
    watch.health({"periodic": {"sweep": poll | {"runs": 4, "last_run_at": "2026-12-06T01:00:45Z"}}})  # 150
    _, counted = watch.runs()
    assert counted["sweep"][1:] == [116.0, 131.0, 146.0]  # not three runs at one moment: no false gap


def test_a_periodic_job_that_ran_once_is_not_on_time_and_one_that_kept_its_period_is():
    start, end = 1000.0, 1180.0
    once = report.periodic_figures({"sweep": [1001.0]}, {"sweep": 15}, start, end, {})["sweep"]
    regular = report.periodic_figures({"sweep": [start + 15 * k for k in range(1, 12)]}, {"sweep": 15}, start, end, {})[
        "sweep"
    ]
    assert (once["expected"], once["seen"], once["on_time"]) == (12, 1, False)
    assert regular["on_time"] and regular["max_gap_s"] <= 30


class _Socket:
    """What report reads of a LiveSocket (the real one needs autobahn on asyncio, which Django's daphne app
    forbids in this process)."""

    def __init__(self, received: list[int], closes: list[float]):
        self.received = Counter(received)
        self.closes = [SimpleNamespace(at=at, code=1011) for at in closes]
        self.resyncs = 0
        self.connects = 1 + len(closes)


def test_events_stored_but_not_received_are_lost_and_only_closes_outside_the_daphne_restart_are_unexpected():
    plan = FaultPlan.for_duration(180)
    daphne = next(f for f in plan.faults if f.kind == "daphne-restart")
    daphne.done_at, daphne.ended_at = 500.0, 503.0
    sockets = {"dashboard": _Socket([1, 2, 2, 3], closes=[501.0, 509.0]), "idle": _Socket([], closes=[100.0])}
    ws = report.socket_figures(sockets, {"dashboard": [1, 2, 3, 4], "idle": []}, plan)
    assert ws["lost"] == 1 and ws["duplicates"] == 1
    assert ws["unexpected_closes"] == 2  # 509 is past the restart's grace; 100 is no restart at all
    assert ws["closes_by_the_run"] == 1
    assert ws["unexpected_closes_after"] == {"daphne-restart": 1, "no fault": 1}
    assert ws["per_socket"]["dashboard"]["lost"] == 1


def _figures(**changes) -> dict:
    figures = {
        "installs": {"stuck": 0, "failed_without_reason": 0,
                     "faulty": {"soak-silent": {"requested": 2, "failed_as_expected": 2}}},
        "deadline_failures": {"expected": 2, "seen": 2},
        "websockets": {"lost": 0, "unexpected_closes": 0},
        "armed": 0,
        "periodic": {"sweep": {"on_time": True, "seen": 12, "expected": 12, "max_gap_s": 16}},
        "healthz_ok_at_end": True,
    }  # fmt: skip
    figures.update(changes)
    return figures


def test_the_verdict_passes_only_when_every_goal_figure_is_met():
    assert report.verdict(_figures()) == (True, [])
    for changes in [
        {"armed": 1},
        {"websockets": {"lost": 1, "unexpected_closes": 0}},
        {"websockets": {"lost": 0, "unexpected_closes": 3}},
        {"deadline_failures": {"expected": 2, "seen": 1}},
        {"periodic": {"sweep": {"on_time": False, "seen": 1, "expected": 12, "max_gap_s": 170}}},
        {"periodic": {}},
        {"healthz_ok_at_end": False},
    ]:
        passed, misses = report.verdict(_figures(**changes))
        assert not passed and len(misses) == 1, changes
    stuck = _figures()
    stuck["installs"] = {**stuck["installs"], "stuck": 2}
    assert report.verdict(stuck)[0] is False
