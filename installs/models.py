"""Installs, their steps and events, batches and alerts.

The Install row is the truth; RQ jobs only move it forward. The states and their transitions are
in installs/states.py, the step kinds in installs/stepkinds.py (both re-exported here), the service
functions that move installs and steps in installs/engine.py, the steps of each method in installs/plan.py.
"""

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse

from inventory.models import Machine, OSProfile

from .plan import PlanField
from .states import ACTIVE_STATES as ACTIVE_STATES
from .states import STEP_DONE_STATES as STEP_DONE_STATES
from .states import STEP_TRANSITIONS as STEP_TRANSITIONS
from .states import TERMINAL_STATES as TERMINAL_STATES
from .states import TRANSITIONS as TRANSITIONS
from .states import InstallState, StepState
from .stepkinds import KINDS
from .stepkinds import StepKind as StepKind


class BatchState(models.TextChoices):
    RUNNING = "running"  # admitting installs as caps allow
    PAUSED = "paused"  # admitting nothing new (too many failures, or a person paused it)
    CANCELLED = "cancelled"  # every install not yet ended was cancelled
    FINISHED = "finished"  # every install has ended


class Batch(models.Model):
    """Installs started together, admitted under concurrency caps with a power-on stagger."""

    name = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_by_label = models.CharField(max_length=150)
    state = models.CharField(max_length=16, choices=BatchState.choices, default=BatchState.RUNNING)
    state_changed_at = models.DateTimeField(auto_now_add=True)
    max_per_site = models.PositiveIntegerField(default=20, help_text="Installs of this batch active at once per site.")
    max_per_rack = models.PositiveIntegerField(default=8, help_text="Installs of this batch active at once per rack.")
    stagger_s = models.FloatField(
        default=5.0, help_text="Seconds between two power-ons of this batch in one rack (breakers trip on inrush)."
    )
    pause_failure_ratio = models.FloatField(
        default=0.3, help_text="Pause by itself when more than this share of the ended installs failed."
    )
    pause_min_ended = models.PositiveIntegerField(
        default=3, help_text="...once at least this many have ended (one early failure is not a trend)."
    )
    pause_reason = models.CharField(max_length=255, blank=True)
    failures_counted_since = models.DateTimeField(
        null=True, blank=True, help_text="Set on resume: the pause rule looks only at installs ended after it."
    )
    last_power_on_at = models.JSONField(default=dict, blank=True, help_text="Rack id → time of the last power-on.")

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "batches"

    def __str__(self):
        return self.name or f"batch {self.pk}"


class Purpose(models.TextChoices):
    """What an install (an operation on the machine) is for; each has its stock workflow and moves the machine
    through its lifecycle (inventory/lifecycle.py) as it starts and ends."""

    DEPLOY = "deploy"  # write an OS (the profile's)
    COMMISSION = "commission"  # boot the memory OS and record the hardware facts
    TEST = "test"  # run hardware tests in the memory OS
    RELEASE = "release"  # erase every disk, verify, and hand the machine back as ready


class Install(models.Model):
    machine = models.ForeignKey(Machine, on_delete=models.PROTECT, related_name="installs")
    profile = models.ForeignKey(OSProfile, on_delete=models.PROTECT, related_name="installs")
    batch = models.ForeignKey(Batch, null=True, blank=True, on_delete=models.PROTECT, related_name="installs")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    requested_by_label = models.CharField(max_length=150)
    state = models.CharField(max_length=16, choices=InstallState.choices, default=InstallState.QUEUED)
    state_changed_at = models.DateTimeField(auto_now_add=True)
    purpose = models.CharField(max_length=12, choices=Purpose.choices, default=Purpose.DEPLOY)
    workflow = models.CharField(max_length=64, blank=True, help_text="The name of the workflow its plan runs.")
    # The machine's lifecycle status when the operation was requested: where a cancel that touched nothing
    # puts it back.
    machine_status_before = models.CharField(max_length=16, blank=True, editable=False)
    # The current step's deadline while it waits for the machine, for people (pages, REST); the sweeper
    # reads the step's own. Kept by engine.move_step.
    deadline_at = models.DateTimeField(null=True, blank=True, help_text="Set only while waiting for the machine.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # What the install does, frozen when it was requested: editing the profile later changes nothing here.
    plan = PlanField()
    # No token is stored (installs/tokens.py): each is derived from SECRET_KEY and this nonce when a
    # boot config or answer file needs it; its SHA-256 finds the install when a machine presents it.
    token_nonce = models.CharField(max_length=32, editable=False)
    # The boot credential, in the boot files: good for one use (the agent's registration, or the
    # installer's fetch of its answer file), then spent; any later use fails the install.
    boot_token_hash = models.CharField(max_length=64, unique=True, editable=False)
    boot_token_spent_at = models.DateTimeField(null=True, blank=True, editable=False)
    boot_token_spent_from = models.GenericIPAddressField(null=True, blank=True, editable=False)
    # The agent's token: written when the agent registers (the boot credential's use), never in a boot file.
    agent_token_hash = models.CharField(max_length=64, unique=True, null=True, blank=True, editable=False)
    # SHA-256 of the key the agent registered with: the same key may ask again for a lost answer.
    agent_key_hash = models.CharField(max_length=64, blank=True, editable=False)
    agent_token_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The installer's callback token: written inside the answer file, opens only /i/<token>/events/.
    callback_token_hash = models.CharField(max_length=64, unique=True, null=True, blank=True, editable=False)
    progress = models.PositiveSmallIntegerField(default=0)
    current_step = models.CharField(max_length=64, blank=True)
    failure_reason = models.CharField(max_length=64, blank=True, help_text="CamelCase, machine readable.")
    failure_message = models.TextField(blank=True, help_text="For people: what went wrong and what to check.")
    cancelled_by_label = models.CharField(max_length=150, blank=True)
    agent_seen_at = models.DateTimeField(null=True, blank=True)
    # When the ended install's cleanup removed its per-MAC boot config; the sweeper queues the cleanup
    # again for an ended install without it (its job was lost with Redis or a worker).
    cleaned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["machine"],
                # sorted: a frozenset's order changes between processes, and the migration must not.
                condition=Q(state__in=sorted(s.value for s in ACTIVE_STATES)),
                name="install_one_active_per_machine",
                violation_error_message="This machine already has an install in progress.",
            ),
            models.CheckConstraint(condition=Q(progress__lte=100), name="install_progress_percent"),
        ]

    def __str__(self):
        return f"install {self.pk} of {self.machine.hostname}"

    def get_absolute_url(self):
        return reverse("install-detail", args=[self.pk])

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def what(self) -> str:
        """What it does, for people: the profile a deploy installs, else the operation and its workflow."""
        if self.purpose == Purpose.DEPLOY:
            return self.profile.name
        what = self.get_purpose_display().lower()
        return f"{what} ({self.workflow})" if self.workflow else what


class Step(models.Model):
    install = models.ForeignKey(Install, on_delete=models.CASCADE, related_name="steps")
    order = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=32, choices=StepKind.choices)
    # For agent tasks, the task kind (write_image, ...); otherwise blank.
    task = models.CharField(max_length=32, blank=True)
    params = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=16, choices=StepState.choices, default=StepState.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    progress = models.PositiveSmallIntegerField(default=0)
    message = models.CharField(max_length=500, blank=True)
    result = models.JSONField(default=dict, blank=True)
    not_before = models.DateTimeField(null=True, blank=True, help_text="A retry waits until then.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)
    # From the workflow (installs/workflow.py): the stage it belongs to, whether that stage runs its steps
    # at once, the label people see, and its policy: timeout_s, retries, backoff_s, on_failure ("fail" or
    # "continue"), destructive, safe_to_repeat. Steps of plans made before workflows: stage 0, serial, {}.
    stage = models.PositiveSmallIntegerField(default=0)
    stage_name = models.CharField(max_length=100, blank=True)
    parallel = models.BooleanField(default=False)
    name = models.CharField(max_length=100, blank=True)
    policy = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["install", "order"]
        constraints = [
            models.UniqueConstraint(fields=["install", "order"], name="step_order_unique_per_install"),
            models.CheckConstraint(condition=Q(progress__lte=100), name="step_progress_percent"),
        ]
        indexes = [models.Index(fields=["state", "deadline_at"], name="step_state_deadline_idx")]

    def __str__(self):
        return f"{self.order}. {self.label}"

    @property
    def label(self) -> str:
        return self.name or KINDS[self.kind].title(self.task)

    @property
    def duration_s(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class EventKind(models.TextChoices):
    STATE = "state"  # the install changed state
    STEP = "step"  # a step started, finished, failed or is retried
    PROGRESS = "progress"  # percent and message from the agent or installer
    LOG = "log"  # log lines from the agent or installer
    ALERT = "alert"  # something a person should look at


class Event(models.Model):
    """What happened, in order (the id orders replay). Written first, then published."""

    install = models.ForeignKey(Install, on_delete=models.CASCADE, related_name="events")
    step = models.ForeignKey(Step, null=True, blank=True, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(auto_now_add=True)
    kind = models.CharField(max_length=16, choices=EventKind.choices)
    message = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["install", "id"], name="event_install_replay_idx")]

    def __str__(self):
        return f"{self.kind}: {self.message[:60]}"

    def as_message(self) -> dict:
        """What browsers receive over the websocket."""
        return {
            "id": self.pk,
            "install": self.install_id,
            "step": self.step_id,
            "at": self.at.isoformat(),
            "kind": self.kind,
            "message": self.message,
            "data": self.data,
        }


class Alert(models.Model):
    """A failure a person should look at; shown on the dashboard until acknowledged."""

    install = models.ForeignKey(Install, null=True, blank=True, on_delete=models.CASCADE, related_name="alerts")
    machine = models.ForeignKey(Machine, null=True, blank=True, on_delete=models.CASCADE, related_name="alerts")
    created_at = models.DateTimeField(auto_now_add=True)
    reason = models.CharField(max_length=64)
    message = models.TextField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by_label = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["acknowledged_at"], name="alert_open_idx")]
        constraints = [
            # A machine's own alerts (no install: BMC unreachable, event log, power) are raised on every read
            # that sees the problem; one stays open until acknowledged, however often it is seen.
            models.UniqueConstraint(
                fields=["machine", "reason"],
                condition=models.Q(install__isnull=True, acknowledged_at__isnull=True),
                name="alert_one_open_per_machine_reason",
            ),
        ]

    def __str__(self):
        return f"{self.reason}: {self.message[:60]}"


class PeriodicRun(models.Model):
    """When a periodic job (installs/periodic.py SCHEDULE) last ran, written by the run itself:
    /healthz calls a job overdue from this, whatever stopped it (scheduler, worker or Redis)."""

    name = models.CharField(max_length=64, unique=True)
    runs = models.PositiveBigIntegerField(default=0)
    failures = models.PositiveBigIntegerField(default=0)
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True, help_text="The last run that succeeded.")
    last_duration_ms = models.FloatField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)

    def __str__(self):
        return f"{self.name}: {self.runs} runs"


class LibraryEntry(models.Model):
    """A versioned, admin-managed document: every save of a changed body is a new version; old versions stay,
    so an install's plan (which freezes what it used) can always be traced to what was written."""

    name = models.CharField(
        max_length=64,
        validators=[
            RegexValidator(
                r"^[a-z0-9][a-z0-9._-]*$",
                "“%(value)s” is not a name: use lower-case letters, digits, dots, hyphens and underscores.",
            )
        ],
    )
    version = models.PositiveIntegerField(default=1, editable=False)
    description = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by_label = models.CharField(max_length=150, blank=True, editable=False)

    class Meta:
        abstract = True
        ordering = ["name", "-version"]

    def __str__(self):
        return f"{self.name} v{self.version}"

    @classmethod
    def latest(cls, name: str):
        return cls.objects.filter(name=name).order_by("-version").first()


class Workflow(LibraryEntry):
    """A workflow document (installs/workflow.py), checked when saved. Profiles name a workflow; an install
    freezes the latest version's checked form in its plan."""

    document = models.TextField(help_text="YAML: name, method, storage, stages (docs/workflows.md).")

    class Meta(LibraryEntry.Meta):
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="workflow_name_version_unique")]


class Script(LibraryEntry):
    """A script workflows run in the memory OS (run_script, or a stage's before/after)."""

    body = models.TextField(help_text="Starts with #! (else run by /bin/sh), as root in the memory OS.")
    timeout_s = models.PositiveIntegerField(default=600, help_text="Stopped (SIGTERM, then SIGKILL) after this long.")
    safe_to_repeat = models.BooleanField(
        default=False, help_text="Running it twice does no harm: workflows may retry it."
    )

    class Meta(LibraryEntry.Meta):
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="script_name_version_unique")]
