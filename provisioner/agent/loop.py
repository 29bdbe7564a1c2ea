"""The agent's main loop: register, pull tasks, run them while reporting progress, post each result, repeat.

Threads: the main thread talks to the control plane about what to do next (tasks/next, which it keeps polling
while tasks run, for the other tasks of a parallel stage); each task runs in a thread of its own, next to a
reporter thread that delivers that task's progress and then its result; one thread sends heartbeats. A task
never waits for the network: its progress is buffered in its own ProgressChannel and its reporter delivers it,
with backoff, whenever the control plane is reachable again.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from provisioner.agent import credentials
from provisioner.agent.client import Backoff, Client, NetworkError, Refused, Rejected, Unauthorized, jittered
from provisioner.agent.context import Context, ProgressChannel
from provisioner.agent.host import Host
from provisioner.agent.journal import Journal
from provisioner.agent.results import TaskAborted, TaskResult
from provisioner.agent.tasks import DESTRUCTIVE, run_task

log = logging.getLogger(__name__)

EXIT_DONE = 0  # the plan is over, the machine is rebooting or powering off, or the install was cancelled
EXIT_INSTALL_ENDED = 3  # 401: the token is no longer valid
EXIT_REFUSED = 4  # 403 on register: not the machine of this install, or its boot credential was already used
EXIT_STOPPED = 5  # stopped from outside (SIGTERM)
EXIT_REJECTED = 6  # the control plane answered 400/404/409 where the contract has no such answer

# Used when register does not say; the contract's example value. (The progress interval's default is
# the Agent's progress_interval_s; register and every progress answer may change it.)
DEFAULT_HEARTBEAT_S = 30
# Floor for intervals the control plane hands out, so a zero or negative value cannot turn a wait into a spin.
MIN_INTERVAL_S = 0.05
# How long an interrupted task gets to stop (run_script: SIGTERM, then SIGKILL after KILL_GRACE_S).
ABORT_GRACE_S = 10
# Pause before polling again when "nothing ready yet" comes without retry_after_s, or when the control plane
# hands out a task that is already running here (one that runs its plan one task at a time does so).
DEFAULT_RETRY_AFTER_S = 5
# Tasks run at once: a parallel stage wipes every disk of the machine together; beyond this the disks' controller,
# not the agent, is the bottleneck, and a plan that asks for more waits for a free slot.
MAX_PARALLEL_TASKS = 16
# Kinds whose result ends the agent's work (they act once reported, when nothing else runs): nothing new is
# taken while one runs.
FINAL_KINDS = frozenset({"reboot", "poweroff"})
# How long an exiting agent waits for its reporters to stop: the task's own ABORT_GRACE_S, plus a request that was
# already on its way.
REPORTER_JOIN_S = ABORT_GRACE_S + 5


def interval(value: object, default: float) -> float:
    """An interval the control plane handed out, in seconds: ``default`` when it said none (or zero, or
    nonsense), never below MIN_INTERVAL_S."""
    try:
        seconds = float(value) if value else default
    except (TypeError, ValueError):
        seconds = default
    return max(MIN_INTERVAL_S, seconds if math.isfinite(seconds) else default)


class _Stopped(Exception):
    pass


@dataclass
class _Running:
    """A task being run here: its reporter thread, and what it ended with."""

    task_id: str
    kind: str
    thread: threading.Thread | None = None
    result: TaskResult | None = None
    error: BaseException | None = None


class Agent:
    def __init__(
        self,
        client: Client,
        host: Host,
        state_dir: Path,
        *,
        poll_wait_s: int = 25,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 60.0,
        progress_interval_s: float = 1.0,
        max_tasks: int = MAX_PARALLEL_TASKS,
        rng: random.Random | None = None,
    ):
        self.client = client
        self.host = host
        self.state_dir = state_dir
        self.poll_wait_s = poll_wait_s
        self.progress_interval_s = progress_interval_s
        self.max_tasks = max(1, max_tasks)
        self.rng = rng or random.Random()
        self._backoff = (backoff_base_s, backoff_cap_s)
        self._stop = threading.Event()
        # Set when the install ended (401) or the agent is stopped: the running task stops at its next check.
        self._abort = threading.Event()
        self._ended = threading.Event()
        self.cancelled = threading.Event()
        # Set whenever the main thread may have something to decide: a task ended, the agent is stopping.
        self._wake = threading.Event()
        # Touched by the main thread only.
        self._running: dict[str, _Running] = {}
        self.journal: Journal | None = None
        self.heartbeat_s: float = DEFAULT_HEARTBEAT_S

    def stop(self) -> None:
        self._stop.set()
        self._abort.set()
        self._wake.set()

    def _new_backoff(self) -> Backoff:
        return Backoff(*self._backoff, rng=self.rng)

    def _sleep(self, seconds: float) -> None:
        self._abort.wait(seconds)
        self._raise_if_interrupted()

    def _raise_if_interrupted(self) -> None:
        if self._ended.is_set():
            raise Unauthorized("the install ended")
        if self._stop.is_set():
            raise _Stopped

    def _end(self) -> None:
        self._ended.set()
        self._abort.set()
        self._wake.set()

    def _wait_for_change(self, seconds: float | None) -> None:
        """Until a task ends, the agent is interrupted, or `seconds` passed."""
        self._wake.wait(seconds)
        self._raise_if_interrupted()

    def _retry(self, what: str, call):
        """Call until the network lets it through; other errors are the caller's."""
        backoff = self._new_backoff()
        while True:
            self._raise_if_interrupted()
            try:
                return call()
            except NetworkError as exc:
                delay = backoff.next_delay()
                log.warning("%s failed (%s); retrying in %.1f s", what, exc, delay)
                self._sleep(delay)

    # -- the loop ---------------------------------------------------------------------------------------------

    def run(self) -> int:
        heartbeats = None
        try:
            answer = self._register()
            install = answer.get("install")
            self.heartbeat_s = interval(answer.get("heartbeat_s"), DEFAULT_HEARTBEAT_S)
            self.progress_interval_s = interval(answer.get("progress_s"), self.progress_interval_s)
            log.info("registered for install %s as %s", install, answer.get("hostname", "?"))
            self.journal = Journal(self.state_dir / f"journal-{install}.jsonl")
            heartbeats = threading.Thread(target=self._heartbeats, name="heartbeat", daemon=True)
            heartbeats.start()
            return self._loop()
        except Refused as exc:
            log.error("the control plane refused this machine: %s: %s", exc.reason, exc.message)
            return EXIT_REFUSED
        except Unauthorized:
            log.warning("the control plane no longer accepts the token: the install ended")
            self._end()
            return EXIT_INSTALL_ENDED
        except _Stopped:
            log.info("stopped")
            return EXIT_STOPPED
        except Rejected as exc:
            # Retrying the same request cannot help; a restarted agent (new facts, new poll) might.
            log.error("the control plane rejected a request this agent cannot change: %s", exc)
            return EXIT_REJECTED
        finally:
            self._stop.set()
            self._wind_down()
            if heartbeats is not None:
                heartbeats.join(timeout=5)
            try:
                self.host.release()
            except Exception:
                log.exception("releasing the host failed")

    def _register(self) -> dict:
        """Register with the boot credential, which that spends, and adopt the agent token the answer hands
        over; or, restarted in the same memory OS, with the agent token kept from the first time."""
        saved = credentials.load(self.state_dir)
        if saved is not None and saved.token:
            self.client.adopt(saved.token, saved.callback_token)
            return self._retry("register", lambda: self.client.register(self.host.facts()))
        if saved is None:
            saved = credentials.Saved()
            credentials.save(self.state_dir, saved)  # before the request: a lost answer is asked for with it
        answer = self._retry("register", lambda: self.client.register(self.host.facts(), key=saved.key))
        token = answer.get("token")
        if isinstance(token, str) and token:
            saved.token, saved.callback_token = token, str(answer.get("callback_token") or "")
            credentials.save(self.state_dir, saved)
            self.client.adopt(saved.token, saved.callback_token)
        return answer

    def _loop(self) -> int:
        then = None  # the action of a finished reboot or poweroff, taken once nothing else runs
        plan_over = False
        while True:
            self._wake.clear()
            then = self._reap() or then
            self._raise_if_interrupted()
            final_running = any(entry.kind in FINAL_KINDS for entry in self._running.values())
            if then is not None or plan_over or self.cancelled.is_set() or final_running:
                if self._running:
                    self._wait_for_change(None)
                    continue
                if then is not None:
                    then()
                elif self.cancelled.is_set():
                    log.info("install cancelled: exiting")
                else:
                    log.info("the plan is over: exiting")
                return EXIT_DONE
            if len(self._running) >= self.max_tasks:
                self._wait_for_change(None)
                continue
            answer = self._retry("tasks/next", lambda: self.client.next_task(self.poll_wait_s))
            # A stop or a 401 heartbeat that came during the long poll wins over the task it brought.
            self._raise_if_interrupted()
            task = answer.get("task")
            if task is not None and not isinstance(task, dict):
                log.error("the control plane sent a task that is not an object: %r", task)
                task = None
            if task is None:
                if answer.get("finished"):
                    plan_over = True
                    continue
                retry_after = max(MIN_INTERVAL_S, float(answer.get("retry_after_s") or DEFAULT_RETRY_AFTER_S))
                # A task that ends meanwhile may well have made the next one ready: ask at once then.
                self._wait_for_change(jittered(retry_after, self.rng))
                continue
            if self.cancelled.is_set():
                log.info("install cancelled: not starting task %s", task.get("id"))
                continue
            self._start(task)

    def _reap(self):
        """Forget the tasks that ended; the `then` of one that has it. A reporter's error (401, stop) is the
        agent's."""
        then = None
        for task_id, entry in list(self._running.items()):
            if entry.thread is not None and entry.thread.is_alive():
                continue
            del self._running[task_id]
            if entry.error is not None:
                raise entry.error
            if entry.result is not None and entry.result.then is not None:
                then = entry.result.then
        return then

    def _wind_down(self) -> None:
        """On the way out: tasks still running stop (a script's children must not outlive the agent), and their
        reporters with them."""
        if not self._running:
            return
        self._abort.set()
        deadline = time.monotonic() + REPORTER_JOIN_S
        for entry in self._running.values():
            if entry.thread is not None:
                entry.thread.join(max(0.0, deadline - time.monotonic()))
        self._running.clear()

    def _heartbeats(self) -> None:
        while not self._stop.wait(jittered(self.heartbeat_s, self.rng)):
            try:
                answer = self.client.heartbeat()
            except NetworkError as exc:
                log.warning("heartbeat failed: %s", exc)
                continue
            except Unauthorized:
                log.warning("heartbeat refused (401): the install ended")
                self._end()
                return
            except (Rejected, Refused) as exc:
                log.warning("heartbeat rejected: %s", exc)
                continue
            if answer.get("cancel") and not self.cancelled.is_set():
                log.info("the control plane cancelled the install: stopping once the running tasks are done")
                self.cancelled.set()
                self._wake.set()

    # -- one task ---------------------------------------------------------------------------------------------

    def _start(self, task: dict) -> None:
        """Decide what to do with a task handed out, and start its reporter thread.

        The journal is consulted and written here, in the main thread, before the task starts: the decision
        "never run a destructive task id twice" is taken for one task id at a time."""
        task_id = str(task.get("id") or "")
        kind = str(task.get("kind") or "")
        if not task_id:
            log.error("the control plane sent a task without an id: %r", task)
            self._wait_for_change(jittered(DEFAULT_RETRY_AFTER_S, self.rng))
            return
        if task_id in self._running:
            # A control plane that runs its plan one task at a time hands out the current task until its result
            # is in: nothing new until a task here ends (or a while has passed).
            self._wait_for_change(jittered(DEFAULT_RETRY_AFTER_S, self.rng))
            return
        journal = self.journal
        entry = _Running(task_id, kind)
        prepared = journal.finished(task_id)
        if prepared is not None:
            # Already ran (the agent restarted before its result got through): answer, never run again.
            log.info("task %s (%s) already finished here: sending its result again", task_id, kind)
            if prepared.ok and kind in FINAL_KINDS:
                prepared.then = getattr(self.host, kind)
            entry.result = prepared
        elif journal.started(task_id) and kind in DESTRUCTIVE:
            prepared = TaskResult.failed(
                "TaskInterrupted",
                f"the agent restarted while {kind} task {task_id} was running; it is not run twice",
            )
        else:
            journal.record_started(task_id, kind)
            log.info("task %s: %s", task_id, kind)
        entry.thread = threading.Thread(
            target=self._report, args=(entry, task.get("params", {}), prepared), name=f"report-{task_id}", daemon=True
        )
        self._running[task_id] = entry
        entry.thread.start()

    def _report(self, entry: _Running, params: object, prepared: TaskResult | None) -> None:
        """A task's reporter thread: runs the task in a thread of its own unless its result is `prepared`, then
        delivers its progress and its result."""
        try:
            if entry.result is not None:
                self._deliver(entry.task_id, entry.result)
                return
            result = prepared or self._run(entry.task_id, entry.kind, params)
            self.journal.record_finished(entry.task_id, result)
            log.info("task %s: %s", entry.task_id, "ok" if result.ok else f"failed: {result.reason}: {result.message}")
            entry.result = result
            self._deliver(entry.task_id, result)
        except Unauthorized as exc:
            entry.error = exc
            self._end()
        except BaseException as exc:
            entry.error = exc
        finally:
            self._wake.set()

    def _run(self, task_id: str, kind: str, params: object) -> TaskResult:
        channel = ProgressChannel()
        # The control plane learns at once that the task began, whatever the task itself reports.
        channel.update(0, f"{kind} started")
        ctx = Context(
            self.host,
            channel,
            self._abort,
            retry_base_s=self._backoff[0],
            identity=getattr(self.client, "identity", None),
        )
        outcome: dict = {}

        def work() -> None:
            try:
                outcome["result"] = run_task(ctx, kind, params)
            except TaskAborted:
                outcome["aborted"] = True
            finally:
                channel.close()

        worker = threading.Thread(target=work, name=f"task-{task_id}", daemon=True)
        worker.start()
        try:
            self._send_progress(task_id, channel, worker)
        except BaseException:
            # A 401 on a progress request, or a stop: the task must not outlive the agent (a script's children
            # would keep running on their own).
            self._abort.set()
            worker.join(ABORT_GRACE_S)
            raise
        # Interrupted, the task gets a moment to stop its children; a tool that cannot be interrupted is left.
        worker.join(ABORT_GRACE_S if self._abort.is_set() else None)
        if outcome.get("aborted") or worker.is_alive():
            self._raise_if_interrupted()
            raise _Stopped  # the agent is going down for another reason (it crashed)
        return outcome["result"]

    def _send_progress(self, task_id: str, channel: ProgressChannel, worker: threading.Thread) -> None:
        """Deliver progress while the task runs, then until everything it reported is through."""
        backoff = self._new_backoff()
        retry_at = 0.0  # after a failed delivery
        next_send = 0.0  # updates are coalesced while the task runs; once it ended, the rest goes at once
        while True:
            if self._abort.is_set():
                # Interrupted: the task stops at its next check; nobody wants its progress.
                return
            alive = worker.is_alive()
            wait_until = max(retry_at, next_send if alive else 0.0)
            now = time.monotonic()
            if now < wait_until:
                self._sleep(min(wait_until - now, 0.1))
                continue
            snap = channel.take()
            if snap is None:
                if not alive:
                    return
                channel.wait(self.progress_interval_s)
                continue
            try:
                answer = self.client.progress(task_id, snap.percent, snap.message, snap.log)
                # The control plane sets the pace: a loaded one asks for reports less often.
                if isinstance(answer, dict):
                    self.progress_interval_s = interval(answer.get("progress_s"), self.progress_interval_s)
            except NetworkError as exc:
                channel.put_back(snap)
                delay = backoff.next_delay()
                log.warning("progress of task %s not delivered (%s); retrying in %.1f s", task_id, exc, delay)
                retry_at = time.monotonic() + delay
                continue
            except Rejected as exc:
                log.warning("progress of task %s rejected (%s); dropped", task_id, exc)
            backoff.reset()
            next_send = time.monotonic() + self.progress_interval_s

    def _deliver(self, task_id: str, result: TaskResult) -> None:
        try:
            self._retry(f"result of task {task_id}", lambda: self.client.result(task_id, result.body()))
        except Rejected as exc:
            # 404/409: the control plane moved on (the task was cancelled or is not current); nothing to add.
            log.warning("result of task %s rejected: %s", task_id, exc)
