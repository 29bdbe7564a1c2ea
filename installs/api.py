"""The agent API, v1 (docs/agent-api.md). The agent in the memory OS registers with the boot credential
from its kernel command line, which that registration spends, and pulls its tasks with the agent token
the registration answer hands it. Bodies are validated before anything is written, and an invalid one
gets a 400 that names the field, as does anything the database could not store (core/edge.py); a body not
sent as application/json gets a 415. Every error answer is a problem document (RFC 9457,
application/problem+json; core/problems.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings
from ninja import Field, NinjaAPI, Path, Query, Schema, Status
from ninja.security import HttpBearer
from pydantic import field_validator

from core import edge, problems
from core.edge import Text
from core.problems import Problem
from inventory.validators import normalise_mac
from provisioner import pxe

from . import callbacks, credentials, progress, workflow_schema
from .models import ACTIVE_STATES, Install

LONG_POLL_MAX_S = 30
LONG_POLL_STEP_S = 1.0


class InstallToken(HttpBearer):
    """Authorization: Bearer <agent token>, handed over at registration; valid only while its install is active."""

    def authenticate(self, request, token):
        return credentials.agent_install(token)


@dataclass(frozen=True)
class Registrant:
    install: Install
    boot_credential: bool  # False: the agent token of an agent restarted in the same memory OS


class BootCredentialOrAgentToken(HttpBearer):
    """Registration: Bearer <boot credential> (its one use), or the agent token an agent already holds."""

    def authenticate(self, request, token):
        install = credentials.agent_install(token)
        if install is not None:
            return Registrant(install, boot_credential=False)
        install = credentials.boot_install(token)
        if install is not None and install.plan.profile.method == pxe.Method.IMAGE:
            return Registrant(install, boot_credential=True)
        return None


class AgentApi(edge.ProblemApi):
    refusals = {
        400: "Invalid input, named in field; nothing was written.",
        401: "No install token, or its install has ended.",
        415: "The body was not sent as application/json; nothing was written.",
    }

    def get_openapi_schema(self, *, path_prefix=None, path_params=None):
        # NinjaAPI's document, with the progress operation added before the refusals are documented on
        # every operation: progress is answered in front of Django (installs/ingest.py), see _progress_document.
        schema = NinjaAPI.get_openapi_schema(self, path_prefix=path_prefix, path_params=path_params)
        if path_prefix is None:
            path_prefix = self.get_root_path(path_params or {})
        progress_schema = _progress_document.get_openapi_schema(path_prefix=path_prefix)
        schema["paths"].update(progress_schema["paths"])
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {}).update(progress_schema.get("components", {}).get("schemas", {}))
        problems.document(schema, self.refusals)
        # The workflows whose tasks the agent runs, described for the same readers as its API.
        workflow_schema.add_to_openapi(schema)
        return schema


api = AgentApi(
    title="provisioner agent API",
    version="1",
    description="What the agent inside the memory OS calls. See docs/agent-api.md.",
    urls_namespace="agent-api-v1",
    auth=InstallToken(),
    docs_url=None,  # the interactive page loads from a CDN the datacentre network cannot reach
)


def problem(status: int, detail: str, **extra) -> tuple[int, dict]:
    """Any other refusal of the agent API: its status and problem document."""
    return status, problems.problem(status, detail, **extra)


UNAUTHORIZED = problem(401, "Unauthorized")


class Disk(Schema):
    name: Text = Field("", max_length=64)
    path: Text = Field(..., min_length=1, max_length=255)
    size_bytes: int = Field(0, ge=0)
    model: Text = Field("", max_length=128)
    serial: Text = Field("", max_length=128)
    rotational: bool | None = None
    # The kernel's wwid ("naa.5000c500a1b2c3d4", "eui.…", or a long "t10.ATA …" id); empty when it has none.
    wwn: Text = Field("", max_length=256)


class Nic(Schema):
    name: Text = Field("", max_length=64)
    mac: Text = Field(..., max_length=32)
    link: bool | None = None
    speed_mbps: int | None = Field(None, ge=0)

    @field_validator("mac")
    @classmethod
    def _mac(cls, value: str) -> str:
        try:
            return normalise_mac(value)
        except Exception:
            raise ValueError(f"{value!r} is not a MAC address") from None


class Dmi(Schema):
    vendor: Text = Field("", max_length=128)
    product: Text = Field("", max_length=128)
    serial: Text = Field("", max_length=128)


class Facts(Schema):
    cpus: int = Field(0, ge=0, le=100000)
    memory_bytes: int = Field(0, ge=0)
    disks: list[Disk] = Field(default_factory=list, max_length=512)
    nics: list[Nic] = Field(..., min_length=1, max_length=128)
    dmi: Dmi = Field(default_factory=Dmi)
    efi: bool | None = None  # the memory OS booted by UEFI; absent: not known (the machine's boot mode stays)


class RegisterIn(Schema):
    agent_version: Text = Field("", max_length=32)
    facts: Facts
    # A random key of the agent's own: with it, and only with it, a lost registration answer may be asked
    # for again (docs/agent-api.md). Not a token: it opens nothing else.
    key: str = Field("", max_length=128, pattern=r"^([A-Za-z0-9_-]{16,128})?$")


class RegisterOut(Schema):
    install: int
    hostname: str
    heartbeat_s: int
    progress_s: float  # the interval between progress reports, until a progress answer says otherwise
    # Handed over when the boot credential is spent: the agent token for every later call, and the token of
    # the installed OS's first-boot callback. Absent when the agent registered with its agent token.
    token: str | None = None
    callback_token: str | None = None


class HeartbeatOut(Schema):
    ok: bool
    cancel: bool


class TaskOut(Schema):
    id: str
    kind: str
    params: dict


class NextOut(Schema):
    task: TaskOut | None = None
    retry_after_s: float | None = None
    finished: bool | None = None


class ProgressIn(Schema):
    percent: int | None = Field(None, ge=0, le=100)
    message: Text = Field("", max_length=2000)
    log: list[Text] = Field(default_factory=list, max_length=1000)


class ProgressOut(Schema):
    ok: bool
    progress_s: float  # wait at least this long before the next report (longer while the control plane is behind)


class ResultIn(Schema):
    ok: bool
    reason: Text = Field("", max_length=64, pattern=r"^([A-Z][A-Za-z0-9]*)?$")
    message: Text = Field("", max_length=4000)
    output: Text = Field("", max_length=65536)
    # The failure is transient (the network past the agent's own retries, a busy device): the step may be
    # retried, as a new task id, if its policy allows.
    retryable: bool = False


class OkOut(Schema):
    ok: bool


class NextQuery(Schema):
    wait: int = Field(0, ge=0, le=LONG_POLL_MAX_S)


@api.post("register", auth=BootCredentialOrAgentToken(), response={200: RegisterOut, 401: Problem, 403: Problem})
def register(request, body: RegisterIn):
    registrant: Registrant = request.auth
    install = registrant.install
    try:
        handover = callbacks.agent_register(
            install.pk, body.facts.model_dump(), boot_credential=registrant.boot_credential, key=body.key
        )
    except callbacks.WrongMachine as exc:
        return problems.response(403, str(exc), reason="WrongMachine")
    except credentials.BootCredentialReused as exc:
        return problems.response(403, str(exc), reason="BootCredentialReused")
    except callbacks.InstallEnded:
        return problems.response(401, "The install has ended.", reason="InstallEnded")
    answer = {
        "install": install.pk,
        "hostname": install.machine.hostname,
        "heartbeat_s": settings.AGENT_HEARTBEAT_S,
        "progress_s": settings.AGENT_PROGRESS_S,
    }
    if handover is not None:
        answer.update(token=handover.token, callback_token=handover.callback_token)
    return answer


@api.post("heartbeat", response=HeartbeatOut)
def heartbeat(request):
    stop = callbacks.agent_heartbeat(request.auth)
    return {"ok": True, "cancel": stop}


@api.get("tasks/next", response=NextOut)
def next_task(request, query: Query[NextQuery]):
    """Long-poll for at most ``wait`` seconds until a task is ready."""
    install: Install = request.auth
    deadline = time.monotonic() + query.wait
    while True:
        answer = callbacks.agent_next_task(install.pk)
        if answer["task"] or answer.get("finished") or time.monotonic() + LONG_POLL_STEP_S > deadline:
            return answer
        time.sleep(LONG_POLL_STEP_S)
        if not Install.objects.filter(pk=install.pk, state__in=ACTIVE_STATES).exists():
            return {"task": None, "finished": True}


def task_refused(outcome: str, task_id: str) -> tuple[int, dict]:
    if outcome == progress.Outcome.UNKNOWN_TASK:
        return problem(404, f"No task {task_id} in this install.")
    return problem(409, f"Task {task_id} is not the install's current task.")


def _task_call(fn, *args):
    try:
        fn(*args)
    except callbacks.UnknownTask:
        return problems.respond(task_refused(progress.Outcome.UNKNOWN_TASK, args[1])[1])
    except callbacks.NotCurrentTask:
        return problems.respond(task_refused(progress.Outcome.NOT_CURRENT, args[1])[1])
    return Status(200, {"ok": True})


@api.post("tasks/{task_id}/result", response={200: OkOut, 404: Problem, 409: Problem})
def result(request, task_id: Path[Text], body: ResultIn):
    return _task_call(
        callbacks.agent_result,
        request.auth.pk,
        task_id,
        body.ok,
        body.reason,
        body.message,
        body.output,
        getattr(body, "retryable", False),
    )


# Progress reports are answered by installs/ingest.py in front of Django (config/asgi.py), never by a view
# here. Their operation is declared on an API of its own that is never routed, only so that this API's
# OpenAPI document describes them from the same schemas and authentication (AgentApi.get_openapi_schema).
_progress_document = NinjaAPI(urls_namespace="agent-api-v1-progress", auth=InstallToken(), docs_url=None)


@_progress_document.post(
    "tasks/{task_id}/progress",
    response={200: ProgressOut, 404: Problem, 409: Problem, 413: Problem, 503: Problem},
    operation_id="installs_api_task_progress",
    description="Answered once the report is stored; 413 past the upload limit; 503 (Retry-After) when the "
    "database could not be reached: send it again.",
)
def task_progress(request, task_id: Path[Text], body: ProgressIn):
    """Served by installs/ingest.py (never routed)."""


edge.refuse_undeclared_query(api)
