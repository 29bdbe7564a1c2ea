"""The agent loop against a stand-in control plane that speaks the contract: protocol behaviour only (backoff,
401, cancel, the journal, delivery after an outage). The end-to-end run against the real API lives elsewhere."""

import json
import logging
import random
import stat
import threading
import time

import pytest

from provisioner.agent import credentials, loop
from provisioner.agent.client import Client
from provisioner.agent.host import SandboxHost
from tests.unit.agent import servers
from tests.unit.agent.servers import AGENT_TOKEN, CALLBACK_TOKEN, TOKEN, Plan

MAC = "52:54:00:12:34:56"


@pytest.fixture
def machine(tmp_path) -> SandboxHost:
    host = SandboxHost(tmp_path / "sandbox")
    (host.root / "machine.json").write_text(json.dumps({"nics": [{"name": "eno1", "mac": MAC, "link": True}]}))
    return host


@pytest.fixture
def plane():
    started = []

    def start(plan: Plan, port: int = 0) -> str:
        server, url = servers.control_plane(plan, port)
        started.append(server)
        return url

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def make_agent(url, host, state_dir, **kw):
    options = {"poll_wait_s": 1, "backoff_base_s": 0.05, "backoff_cap_s": 0.4, "progress_interval_s": 0.05,
               "rng": random.Random(7)}  # fmt: skip
    return loop.Agent(Client(url, TOKEN), host, state_dir, **{**options, **kw})


def run_agent(agent, timeout=10.0):
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("code", agent.run()), daemon=True)
    thread.start()
    return thread, outcome


def finish(thread, outcome, agent, timeout=10.0):
    thread.join(timeout)
    if thread.is_alive():
        agent.stop()
        thread.join(5)
        pytest.fail("the agent did not exit")
    return outcome["code"]


def script(task_id, text, timeout_s=10):
    return {"id": task_id, "kind": "run_script", "params": {"script": text, "timeout_s": timeout_s}}


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached")
        time.sleep(0.01)


def test_runs_a_plan_and_exits_when_it_is_over(machine, plane, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    plan = Plan(tasks=[{"id": "t1", "kind": "inventory", "params": {}}, script("t2", "echo hello"),
                       {"id": "t3", "kind": "set_hostname", "params": {"hostname": "web01.example.net"}}],
                macs=(MAC,), idle_polls=2)  # fmt: skip
    agent = make_agent(plane(plan), machine, tmp_path / "state")
    assert finish(*run_agent(agent), agent) == loop.EXIT_DONE
    assert plan.registered[0]["agent_version"] == "1"
    assert plan.registered[0]["facts"]["nics"][0]["mac"] == MAC
    assert [plan.results[t][0]["ok"] for t in ("t1", "t2", "t3")] == [True, True, True]
    assert json.loads(plan.results["t1"][0]["output"])["nics"][0]["mac"] == MAC
    assert any("hello" in body["log"] for tid, body in plan.progress if tid == "t2")
    assert (machine.target / "etc/hostname").read_text() == "web01.example.net\n"
    # "Nothing ready yet" is waited out, not taken for the end of the plan.
    assert plan.paths().count("tasks/next") == 2 + 3 + 1
    # The boot credential registers, once; the agent token its answer handed over does everything else.
    assert plan.calls[0] == ("register", f"Bearer {TOKEN}")
    assert {auth for _, auth in plan.calls[1:]} == {f"Bearer {AGENT_TOKEN}"}
    for token in (TOKEN, AGENT_TOKEN, CALLBACK_TOKEN):
        assert token not in caplog.text


def test_the_tokens_handed_over_are_kept_for_the_agent_alone(machine, plane, tmp_path):
    plan = Plan(macs=(MAC,))
    agent = make_agent(plane(plan), machine, tmp_path / "state")
    assert finish(*run_agent(agent), agent) == loop.EXIT_DONE
    kept = tmp_path / "state" / credentials.FILE_NAME
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    saved = credentials.load(tmp_path / "state")
    assert (saved.token, saved.callback_token) == (AGENT_TOKEN, CALLBACK_TOKEN)
    assert saved.key == plan.registered[0]["key"] and len(saved.key) >= 32
    assert TOKEN not in repr(saved) and AGENT_TOKEN not in repr(saved)
    assert agent.client.identity() == (agent.client.base, CALLBACK_TOKEN)  # what first_boot_callback writes


def test_a_lost_registration_answer_is_asked_for_again_with_the_same_key(machine, plane, tmp_path):
    plan = Plan(macs=(MAC,), lost_register_answers=1, tasks=[{"id": "t1", "kind": "inventory", "params": {}}])
    agent = make_agent(plane(plan), machine, tmp_path / "state")
    assert finish(*run_agent(agent), agent) == loop.EXIT_DONE
    assert [path for path, _ in plan.calls[:2]] == ["register", "register"]
    assert plan.registered[0]["key"] == plan.registered[1]["key"]
    assert plan.results["t1"][0]["ok"] is True


def test_an_agent_restarted_in_the_same_memory_os_registers_with_its_kept_token(machine, plane, tmp_path):
    plan = Plan(macs=(MAC,))
    first = make_agent(plane(plan), machine, tmp_path / "state")
    assert finish(*run_agent(first), first) == loop.EXIT_DONE
    plan.tasks = [{"id": "t1", "kind": "inventory", "params": {}}]
    again = make_agent(plane(plan), machine, tmp_path / "state")  # the boot credential on its command line is spent
    assert finish(*run_agent(again), again) == loop.EXIT_DONE
    registrations = [auth for path, auth in plan.calls if path == "register"]
    assert registrations == [f"Bearer {TOKEN}", f"Bearer {AGENT_TOKEN}"]
    assert plan.results["t1"][0]["ok"] is True


def test_a_boot_credential_someone_else_used_ends_the_agent_before_any_task(machine, plane, tmp_path):
    plan = Plan(macs=(MAC,), boot_spent=True, key="someone-elses-key-0123456789", tasks=[script("t1", "echo no")])
    agent = make_agent(plane(plan), machine, tmp_path / "state")
    assert finish(*run_agent(agent), agent) == loop.EXIT_REFUSED
    assert plan.paths() == ["register"] and plan.results == {}


def test_connection_refused_and_5xx_are_retried_with_capped_jittered_backoff(
    machine, plane, tmp_path, free_port, caplog
):
    caplog.set_level(logging.WARNING, logger="provisioner.agent.loop")
    plan = Plan(macs=(MAC,), register_503s=2)
    agent = make_agent(f"http://127.0.0.1:{free_port}", machine, tmp_path / "state")
    thread, outcome = run_agent(agent)
    time.sleep(1.2)
    assert plan.registered == [] and thread.is_alive()
    plane(plan, free_port)
    assert finish(thread, outcome, agent) == loop.EXIT_DONE
    assert len(plan.registered) == 1
    delays = [r.args[2] for r in caplog.records if r.msg.startswith("%s failed") and r.args[0] == "register"]
    assert len(delays) >= 5
    for attempt, delay in enumerate(delays):
        ceiling = min(0.4, 0.05 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling, (attempt, delay)
    assert max(delays) > 0.2  # the cap was reached: the series grew


def test_wrong_machine_is_refused_and_nothing_runs(machine, plane, tmp_path):
    plan = Plan(macs=("aa:bb:cc:dd:ee:ff",), tasks=[script("t1", "echo no")])
    agent = make_agent(plane(plan), machine, tmp_path / "state")
    assert finish(*run_agent(agent), agent) == loop.EXIT_REFUSED
    assert plan.paths() == ["register"]


def test_401_ends_the_agent_and_aborts_the_running_task(machine, plane, tmp_path):
    plan = Plan(macs=(MAC,), heartbeat_s=0.1, tasks=[script("t1", "echo started\nsleep 20", timeout_s=60)])
    agent = make_agent(plane(plan), machine, tmp_path / "state")
    thread, outcome = run_agent(agent)
    wait_for(lambda: any(tid == "t1" and "started" in body["log"] for tid, body in plan.progress))
    plan.revoked = True
    began = time.monotonic()
    assert finish(thread, outcome, agent) == loop.EXIT_INSTALL_ENDED
    assert time.monotonic() - began < 3
    assert plan.results == {}
    calls = len(plan.requests)
    time.sleep(0.4)
    assert len(plan.requests) == calls  # heartbeats stopped too


def test_401_on_register_ends_at_once(machine, plane, tmp_path):
    plan = Plan(revoked=True)
    agent = make_agent(plane(plan), machine, tmp_path / "state")
    assert finish(*run_agent(agent), agent) == loop.EXIT_INSTALL_ENDED
    assert plan.paths() == ["register"]


def test_a_rejected_request_is_not_retried(machine, plane, tmp_path):
    plan = Plan(macs=(MAC,), bad_request={"register"})
    agent = make_agent(plane(plan), machine, tmp_path / "state")
    assert finish(*run_agent(agent), agent) == loop.EXIT_REJECTED
    assert plan.paths() == ["register"]


def test_cancel_stops_after_the_current_task(machine, plane, tmp_path):
    plan = Plan(macs=(MAC,), heartbeat_s=0.1,
                tasks=[script("t1", "echo working\nsleep 0.6\necho done"), script("t2", "echo never")])  # fmt: skip
    agent = make_agent(plane(plan), machine, tmp_path / "state")
    thread, outcome = run_agent(agent)
    wait_for(lambda: plan.progress)
    plan.cancel = True
    assert finish(thread, outcome, agent) == loop.EXIT_DONE
    assert plan.results["t1"][0]["ok"] is True and plan.results["t1"][0]["output"].endswith("done")
    assert "t2" not in plan.results
    assert plan.heartbeats >= 1


def test_journal_answers_a_finished_task_without_running_it_again(machine, plane, tmp_path):
    counter = tmp_path / "runs"
    tasks = [script("w1", f"echo ran >> {counter}\necho output-of-w1")]
    first = Plan(macs=(MAC,), tasks=tasks)
    agent = make_agent(plane(first), machine, tmp_path / "state")
    assert finish(*run_agent(agent), agent) == loop.EXIT_DONE
    # The agent restarts (same state dir) and the control plane, which never got the result, hands out w1 again.
    second = Plan(macs=(MAC,), tasks=tasks)
    agent = make_agent(plane(second), machine, tmp_path / "state")
    assert finish(*run_agent(agent), agent) == loop.EXIT_DONE
    assert counter.read_text() == "ran\n"
    assert second.results["w1"] == first.results["w1"]
    assert second.results["w1"][0]["output"] == "output-of-w1"


def test_a_destructive_task_interrupted_by_a_restart_is_not_run_again(machine, plane, tmp_path):
    marker = tmp_path / "wiped"
    state = tmp_path / "state"
    state.mkdir()
    (state / "journal-12.jsonl").write_text(
        '{"event": "started", "id": "w1", "kind": "run_script"}\n'
        '{"event": "started", "id": "i1", "kind": "inventory"}\n'
        '{"event": "fini'  # a torn last line from the crash
    )
    plan = Plan(macs=(MAC,), tasks=[script("w1", f"touch {marker}"), {"id": "i1", "kind": "inventory", "params": {}}])
    agent = make_agent(plane(plan), machine, state)
    assert finish(*run_agent(agent), agent) == loop.EXIT_DONE
    assert (plan.results["w1"][0]["ok"], plan.results["w1"][0]["reason"]) == (False, "TaskInterrupted")
    assert not marker.exists()
    assert plan.results["i1"][0]["ok"] is True  # harmless kinds simply run again


def test_task_keeps_running_through_an_outage_and_everything_is_delivered(machine, plane, tmp_path):
    marker = tmp_path / "finished"
    text = "for i in 1 2 3 4 5; do echo line $i; sleep 0.05; done\n" + f"touch {marker}\necho end"
    plan = Plan(macs=(MAC,), tasks=[script("t1", text)], outage={"progress", "result"})
    agent = make_agent(plane(plan), machine, tmp_path / "state")
    thread, outcome = run_agent(agent)
    wait_for(lambda: marker.exists())
    time.sleep(0.5)
    assert plan.results == {}  # finished while the control plane is unreachable: nothing got through
    assert plan.paths().count("tasks/t1/progress") >= 2  # retried meanwhile
    plan.outage = set()
    assert finish(thread, outcome, agent) == loop.EXIT_DONE
    assert plan.results["t1"][0]["ok"] is True
    delivered = [line for _, body in plan.progress for line in body["log"]]
    assert delivered == [f"line {i}" for i in range(1, 6)] + ["end"]
    percents = [body["percent"] for _, body in plan.progress]
    assert percents == sorted(percents) and percents[-1] == 100


def test_the_control_plane_sets_the_pace_of_progress_reports(machine, plane, tmp_path):
    text = "for i in $(seq 1 40); do echo line $i; sleep 0.02; done"
    plan = Plan(macs=(MAC,), tasks=[script("t1", text)], progress_s=0.3)
    agent = make_agent(plane(plan), machine, tmp_path / "state")  # on its own it would report every 0.05 s
    assert finish(*run_agent(agent), agent) == loop.EXIT_DONE
    assert agent.progress_interval_s == 0.3  # from register, then from every progress answer
    sent = [at for at, _, path in plan.requests if path == "tasks/t1/progress"]
    gaps = [b - a for a, b in zip(sent, sent[1:-1], strict=False)]  # the last one goes at once: the task ended
    assert gaps and min(gaps) >= 0.25, gaps
    delivered = [line for _, body in plan.progress for line in body["log"]]
    assert delivered == [f"line {i}" for i in range(1, 41)]  # slower, none lost


@pytest.mark.parametrize(
    "value, expected",
    [(2, 2.0), ("0.5", 0.5), (None, 7.0), (0, 7.0), ("soon", 7.0), ([1], 7.0), (float("nan"), 7.0),
     (float("inf"), 7.0), (-3, loop.MIN_INTERVAL_S), (0.001, loop.MIN_INTERVAL_S)],
)  # fmt: skip
def test_intervals_from_the_control_plane_are_taken_with_care(value, expected):
    assert loop.interval(value, 7.0) == expected


def test_reboot_is_reported_before_it_happens_and_ends_the_loop(machine, plane, tmp_path):
    seen = {}
    plan = Plan(macs=(MAC,), tasks=[{"id": "r1", "kind": "reboot", "params": {}}, script("t2", "echo after")])
    plan.on_result = lambda tid, body: seen.setdefault(tid, (machine.root / "reboot-requested").exists())
    agent = make_agent(plane(plan), machine, tmp_path / "state")
    assert finish(*run_agent(agent), agent) == loop.EXIT_DONE
    assert seen == {"r1": False}
    assert (machine.root / "reboot-requested").exists()
    assert plan.paths().count("tasks/next") == 1


# -- several tasks at once ---------------------------------------------------------------------------------------


def staged(stage, task):
    return {**task, "stage": stage}


def test_a_parallel_stage_runs_its_tasks_at_once_each_with_its_own_reports(machine, plane, tmp_path):
    met = tmp_path / "met"
    met.mkdir()
    # Each task waits for the other two to have started: run one after another, the first would time out.
    text = "touch {met}/{name}\necho {name} started\nfor i in $(seq 100); do [ $(ls {met} | wc -l) -ge 3 ] && break; sleep 0.05; done\n[ $(ls {met} | wc -l) -ge 3 ] || exit 9\necho {name} done"  # noqa: E501
    wipes = [staged("wipe", script(name, text.format(met=met, name=name))) for name in ("w1", "w2", "w3")]
    plan = Plan(macs=(MAC,), tasks=[*wipes, script("after", f"ls {met} | wc -l")])
    agent = make_agent(plane(plan), machine, tmp_path / "state")
    assert finish(*run_agent(agent), agent) == loop.EXIT_DONE
    for name in ("w1", "w2", "w3"):
        assert plan.results[name][0]["ok"] is True, plan.results[name]
        lines = [line for tid, body in plan.progress if tid == name for line in body["log"]]
        assert lines == [f"{name} started", f"{name} done"]
    assert plan.results["after"][0]["output"].strip() == "3"
    # The task after the stage was handed out only once the stage was over.
    assert plan.handed[-1] == "after"


def test_no_more_tasks_run_at_once_than_the_bound(machine, plane, tmp_path):
    running, counts = tmp_path / "running", tmp_path / "counts"
    running.mkdir()
    text = "touch {r}/{n}\nls {r} | wc -l >> {c}\nsleep 0.3\nrm {r}/{n}"
    tasks = [staged("s", script(f"t{i}", text.format(r=running, n=f"t{i}", c=counts))) for i in range(5)]
    plan = Plan(macs=(MAC,), tasks=tasks)
    agent = make_agent(plane(plan), machine, tmp_path / "state", max_tasks=2)
    assert finish(*run_agent(agent), agent) == loop.EXIT_DONE
    assert all(plan.results[f"t{i}"][0]["ok"] for i in range(5))
    assert max(int(n) for n in counts.read_text().split()) == 2


def test_a_reboot_waits_until_no_other_task_runs(machine, plane, tmp_path):
    seen = {}
    plan = Plan(macs=(MAC,), tasks=[staged("end", script("s1", "sleep 0.5\necho synced")),
                                    staged("end", {"id": "r1", "kind": "reboot", "params": {}}),
                                    script("t3", "echo never")])  # fmt: skip
    plan.on_result = lambda tid, body: seen.setdefault(tid, (machine.root / "reboot-requested").exists())
    agent = make_agent(plane(plan), machine, tmp_path / "state")
    assert finish(*run_agent(agent), agent) == loop.EXIT_DONE
    # The reboot reported at once, but acted only after the script's result was in.
    assert list(seen) == ["r1", "s1"] and seen == {"r1": False, "s1": False}
    assert (machine.root / "reboot-requested").exists()
    assert "t3" not in plan.handed  # nothing is taken once a reboot is on its way


def test_cancel_lets_the_running_tasks_finish_and_takes_no_new_one(machine, plane, tmp_path):
    plan = Plan(macs=(MAC,), heartbeat_s=0.1,
                tasks=[staged("s", script("a", "echo a\nsleep 0.6\necho a-done")),
                       staged("s", script("b", "echo b\nsleep 0.6\necho b-done")),
                       script("c", "echo never")])  # fmt: skip
    agent = make_agent(plane(plan), machine, tmp_path / "state")
    thread, outcome = run_agent(agent)
    wait_for(lambda: {tid for tid, _ in plan.progress} >= {"a", "b"})
    plan.cancel = True
    assert finish(thread, outcome, agent) == loop.EXIT_DONE
    assert plan.results["a"][0]["output"].endswith("a-done") and plan.results["b"][0]["output"].endswith("b-done")
    # A poll already on its way may bring the next task; it is not started.
    assert "c" not in plan.results and not any(tid == "c" for tid, _ in plan.progress)


def test_a_task_handed_out_again_while_it_runs_is_not_started_twice(machine, plane, tmp_path):
    counter = tmp_path / "runs"
    plan = Plan(macs=(MAC,), rehand=True, tasks=[script("t1", f"echo ran >> {counter}\nsleep 0.5")])
    agent = make_agent(plane(plan), machine, tmp_path / "state")
    assert finish(*run_agent(agent), agent) == loop.EXIT_DONE
    assert counter.read_text() == "ran\n"
    assert len(plan.results["t1"]) == 1
    # Handed out, handed out again (the agent then waits for its task to end, not polling meanwhile), finished.
    assert plan.paths().count("tasks/next") == 3


def test_the_journal_decides_for_each_task_of_a_parallel_stage(machine, plane, tmp_path):
    markers = {name: tmp_path / name for name in ("w1", "w2", "i1")}
    state = tmp_path / "state"
    state.mkdir()
    stored = {"ok": False, "reason": "DiskBusy", "message": "busy", "output": "", "retryable": True}
    (state / "journal-12.jsonl").write_text(
        '{"event": "started", "id": "w1", "kind": "run_script"}\n'
        '{"event": "started", "id": "w2", "kind": "run_script"}\n'
        f'{{"event": "finished", "id": "w2", "result": {json.dumps(stored)}}}\n'
    )
    tasks = [staged("s", script(name, f"touch {markers[name]}")) for name in ("w1", "w2")]
    plan = Plan(macs=(MAC,), tasks=[*tasks, staged("s", {"id": "i1", "kind": "inventory", "params": {}})])
    agent = make_agent(plane(plan), machine, state)
    assert finish(*run_agent(agent), agent) == loop.EXIT_DONE
    assert (plan.results["w1"][0]["ok"], plan.results["w1"][0]["reason"]) == (False, "TaskInterrupted")
    assert plan.results["w2"] == [stored]  # sent again as it was, retryable included
    assert plan.results["i1"][0]["ok"] is True
    assert not markers["w1"].exists() and not markers["w2"].exists()


def test_parallel_tasks_run_through_an_outage_and_each_report_reaches_its_task(machine, plane, tmp_path):
    done = {name: tmp_path / f"{name}-done" for name in ("p1", "p2")}
    text = "for i in 1 2 3; do echo {n} line $i; sleep 0.05; done\ntouch {m}"
    tasks = [staged("s", script(n, text.format(n=n, m=done[n]))) for n in ("p1", "p2")]
    plan = Plan(macs=(MAC,), tasks=tasks, outage={"progress", "result"})
    agent = make_agent(plane(plan), machine, tmp_path / "state")
    thread, outcome = run_agent(agent)
    wait_for(lambda: all(m.exists() for m in done.values()))
    assert plan.results == {}
    plan.outage = set()
    assert finish(thread, outcome, agent) == loop.EXIT_DONE
    for name in ("p1", "p2"):
        assert plan.results[name][0]["ok"] is True and plan.results[name][0]["retryable"] is False
        delivered = [line for tid, body in plan.progress if tid == name for line in body["log"]]
        assert delivered == [f"{name} line {i}" for i in (1, 2, 3)]


def test_401_during_a_parallel_stage_stops_every_task(machine, plane, tmp_path):
    tasks = [staged("s", script(n, f"echo {n} started\nsleep 20", timeout_s=60)) for n in ("a", "b")]
    plan = Plan(macs=(MAC,), heartbeat_s=0.1, tasks=tasks)
    agent = make_agent(plane(plan), machine, tmp_path / "state")
    thread, outcome = run_agent(agent)
    wait_for(lambda: {tid for tid, _ in plan.progress} >= {"a", "b"})
    plan.revoked = True
    began = time.monotonic()
    assert finish(thread, outcome, agent) == loop.EXIT_INSTALL_ENDED
    assert time.monotonic() - began < 3
    assert plan.results == {}
    assert not [t for t in threading.enumerate() if t.name.startswith(("task-", "report-"))]
