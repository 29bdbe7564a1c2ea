"""A write-ahead record of the tasks this agent started and finished, so a restart never repeats one.

One JSON object per line, appended and fsynced before the step it records takes effect: `started` before a
task runs, `finished` (with its result) before the result is posted. A task id that comes back finished is
answered with its stored result; one that was started but never finished is not run again if it is destructive.
Several tasks may run at once: each records its own lines, and the guarantee holds for each task id.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from provisioner.agent.results import TaskResult


class Journal:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._started: dict[str, str] = {}
        self._finished: dict[str, TaskResult] = {}
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._load()

    def _load(self) -> None:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return
        for line in lines:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                # A crash mid-append leaves at most one torn last line; everything before it is intact.
                continue
            if entry.get("event") == "started":
                self._started[entry["id"]] = entry.get("kind", "")
            elif entry.get("event") == "finished":
                self._finished[entry["id"]] = TaskResult.from_body(entry["result"])

    def _append(self, entry: dict) -> None:
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (json.dumps(entry, sort_keys=True) + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)

    def started(self, task_id: str) -> bool:
        return task_id in self._started

    def finished(self, task_id: str) -> TaskResult | None:
        return self._finished.get(task_id)

    def record_started(self, task_id: str, kind: str) -> None:
        self._append({"event": "started", "id": task_id, "kind": kind})
        self._started[task_id] = kind

    def record_finished(self, task_id: str, result: TaskResult) -> None:
        self._append({"event": "finished", "id": task_id, "result": result.body()})
        self._finished[task_id] = result
