"""Settings for provisioner, read from the environment (12-factor).

Two modes. Development (``PROVISIONER_DEV=1``, what ``make run`` sets): SQLite under ``var/``,
generated secrets kept under ``var/`` so a restart can still decrypt the demo's BMC passwords.
Production (the default): every secret must be given, and a missing one stops start-up with a
message that names the variable.
"""

import ipaddress
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from config.rq_queues import SiteQueues

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("PROVISIONER_VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()

DEV = env.bool("PROVISIONER_DEV", default=False)
DEBUG = env.bool("DEBUG", default=DEV)


def _dev_secret(name: str, make) -> str:
    """A secret generated once for a development checkout and kept under var/."""
    path = VAR_DIR / f"dev-{name.lower()}"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


def _required(name: str, dev_default) -> str:
    value = env.str(name, default="")
    if value:
        return value
    if DEV:
        return _dev_secret(name, dev_default)
    raise ImproperlyConfigured(
        f"{name} is not set. provisioner runs in production mode unless PROVISIONER_DEV=1, "
        f"and production mode needs {name} in the environment (see README, Configuration)."
    )


def _new_secret_key() -> str:
    from django.core.management.utils import get_random_secret_key

    return get_random_secret_key()


def _new_fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


SECRET_KEY = _required("SECRET_KEY", _new_secret_key)

# Keys for secrets stored in the database (BMC passwords, jump host and site login SSH keys), comma
# separated, newest first: new values are encrypted with the first, every key decrypts. Rotate by
# prepending a key, running `manage.py rotate_field_keys` (every encrypted field, all or nothing), then
# dropping the old key once `manage.py rotate_field_keys --check` passes without it.
PROVISIONER_FIELD_KEYS = [
    k.strip() for k in _required("PROVISIONER_FIELD_KEYS", _new_fernet_key).split(",") if k.strip()
]

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"] if DEV else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "config.apps.AdminConfig",  # django.contrib.admin, with the site of config/admin.py
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "django_rq",
    "accounts",
    "audit",
    "inventory",
    "installs",
    "access",
    "serialconsole",
    "console",
    "webhooks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.security.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "core.edge.EdgeMiddleware",  # NUL and the like refused before CSRF or any view reads them
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "audit.middleware.SourceAddressMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'provisioner.sqlite3'}"),
}
# daphne runs each request on a thread of its own, so persistent connections (CONN_MAX_AGE > 0)
# would leave one open per thread until PostgreSQL runs out; reuse comes from psycopg's pool
# instead (DATABASE_POOL_MAX connections per process). RQ workers keep theirs between jobs anyway.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=0)
DATABASE_POOL_MAX = env.int("DATABASE_POOL_MAX", default=0)
if DATABASE_POOL_MAX and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {"min_size": 1, "max_size": DATABASE_POOL_MAX}
    # A pooled connection the server ended (failover, restart, pg_terminate_backend) is checked and
    # replaced when taken from the pool, instead of failing the request that drew it.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The dashboard, the RQ worker and the agent API write concurrently; WAL lets readers
    # proceed and the timeout makes a writer wait for the lock instead of failing at once.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # IMMEDIATE: a transaction takes the write lock when it begins, waiting up to the timeout; a
    # deferred one that later tries to write fails at once with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Failed logins per address and per username before further attempts are refused, and for how long.
LOGIN_MAX_FAILURES = env.int("LOGIN_MAX_FAILURES", default=10)
LOGIN_FAILURE_WINDOW_S = env.int("LOGIN_FAILURE_WINDOW_S", default=900)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEV
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Development serves static files straight from the source folders; production from
# STATIC_ROOT after `manage.py collectstatic`.
WHITENOISE_USE_FINDERS = DEV
WHITENOISE_AUTOREFRESH = DEV

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")

# A job makes a few short BMC or file calls and never waits for a machine, so anything running
# this long is stuck: RQ kills it and the install's sweeper retries or fails the step.
RQ_JOB_TIMEOUT_S = env.int("RQ_JOB_TIMEOUT_S", default=120)
# django-rq's pages show the control-plane queues (default: periodic jobs and alerts; webhooks) and every
# site's queue, where its installs run; site queues come and go with the sites (config/rq_queues.py).
RQ_QUEUES = SiteQueues(["default", "webhooks"], {"URL": REDIS_URL, "DEFAULT_TIMEOUT": RQ_JOB_TIMEOUT_S})
# django-rq would also mount its pages inside the Django admin (/admin/django_rq/dashboard/), where its
# stats.json answers is_staff again and its staff checks turn away admins who are not staff. Its pages
# are mounted once, at /django-rq/, for the admin role (console/queue_pages.py).
RQ_SHOW_ADMIN_LINK = False

# --- BMCs -----------------------------------------------------------------------------------
# Seconds one BMC call (login included) may take before it counts as unreachable. Healthy BMCs
# answer in milliseconds; iLO and iDRAC under load take a second or two.
BMC_TIMEOUT_S = env.float("BMC_TIMEOUT_S", default=5.0)
# Minimum pause between two commands to the same BMC, across every worker process: some iLO 4
# and older iDRAC firmwares drop sessions or stop answering IPMI when commands arrive back to back.
BMC_MIN_INTERVAL_S = env.float("BMC_MIN_INTERVAL_S", default=0.2)
# How long a caller queues behind another command to the same BMC before giving up as "busy"
# (retryable): long enough for a slow power-on, short enough not to hold a worker.
BMC_MAX_WAIT_S = env.float("BMC_MAX_WAIT_S", default=15.0)
# The power state of every machine is re-read this often (spread over the interval), so the
# dashboard's power column is never older than this, as Ironic's power sync does.
POWER_SYNC_INTERVAL_S = env.int("POWER_SYNC_INTERVAL_S", default=300)
# Sensors and the system event log of every machine are re-read this often (spread over the interval, like the
# power sync). A read is tens to hundreds of BMC round trips, and a new critical log entry alerts within this.
HEALTH_SYNC_INTERVAL_S = env.int("HEALTH_SYNC_INTERVAL_S", default=900)
# After this many consecutive failed reads a BMC is shown as unreachable; one lost UDP packet
# on a busy management network is not an outage.
BMC_UNREACHABLE_AFTER = env.int("BMC_UNREACHABLE_AFTER", default=3)
# Host ping (ICMP echo to each machine's primary address, from its site's worker). Every host is pinged
# this often, one job per site; a sweep lasts about one timeout however many hosts are silent.
HOST_PING_INTERVAL_S = env.int("HOST_PING_INTERVAL_S", default=300)
# A host on the same fabric answers in well under a millisecond; a second covers a busy one.
HOST_PING_TIMEOUT_S = env.float("HOST_PING_TIMEOUT_S", default=1.0)
# auto: an unprivileged ICMP socket where net.ipv4.ping_group_range covers the worker's group, else the ping
# binary; socket or binary to insist on one.
HOST_PING_METHOD = env.str("HOST_PING_METHOD", default="auto")
# Seconds one SNMP request to a PDU may take (one retry included). PDUs' network cards answer in
# milliseconds; UDP loses a packet now and then, and the retry covers that.
PDU_TIMEOUT_S = env.float("PDU_TIMEOUT_S", default=3.0)

# --- Serial console (served by the web process: serialconsole/hub.py) -------------------------
# After the last browser leaves, SOL stays active this long: a page reload or a flaky link
# reconnects to the same session instead of re-activating SOL (a few BMCs take seconds to).
CONSOLE_IDLE_GRACE_S = env.float("CONSOLE_IDLE_GRACE_S", default=15.0)
# Output kept for a browser that joins a running session, so it sees the screen it joins.
CONSOLE_BACKLOG_BYTES = env.int("CONSOLE_BACKLOG_BYTES", default=64 * 1024)
# A recording stops growing here (a machine stuck printing a kernel oops loop must not fill the disk).
CONSOLE_RECORDING_MAX_BYTES = env.int("CONSOLE_RECORDING_MAX_BYTES", default=20 * 1024 * 1024)
# Where recordings (asciicast v2 files, one per session) live.
CONSOLE_DIR = Path(env.str("CONSOLE_DIR", default=str(VAR_DIR / "console")))

# --- Installs -------------------------------------------------------------------------------
# How long a machine may take from power cycle to the installer's or agent's first call: POST on
# large Dell and HPE servers alone takes 3-5 minutes, then PXE, TFTP and the initrd download.
INSTALL_BOOT_DEADLINE_S = env.int("INSTALL_BOOT_DEADLINE_S", default=900)
# A distribution installer's whole run (package downloads from a mirror dominate).
INSTALL_INSTALLER_DEADLINE_S = env.int("INSTALL_INSTALLER_DEADLINE_S", default=3600)
# One agent task; writing a large image over a busy 1 GbE link is the slowest.
INSTALL_AGENT_TASK_DEADLINE_S = env.int("INSTALL_AGENT_TASK_DEADLINE_S", default=1800)
# The agent heartbeats every AGENT_HEARTBEAT_S; this long without one means the machine is gone.
AGENT_HEARTBEAT_S = env.int("AGENT_HEARTBEAT_S", default=30)
AGENT_SILENCE_S = env.int("AGENT_SILENCE_S", default=180)
# The agent sends its progress at most every AGENT_PROGRESS_S (register and every progress answer say so);
# when more reports wait than one commit group carries, the answers ask for longer, up to AGENT_PROGRESS_MAX_S.
AGENT_PROGRESS_S = env.float("AGENT_PROGRESS_S", default=1.0)
AGENT_PROGRESS_MAX_S = env.float("AGENT_PROGRESS_MAX_S", default=10.0)
# An agent whose registration answer was lost (a reset connection, a timeout under a rack's worth of
# registrations) may ask again with the key it registered with, for this long and only until it first uses
# the token that answer carried: long enough for the agent's retries with backoff, short enough that the
# key is dead long before anyone could have read it from the machine (docs/design.md, Threat model).
AGENT_REGISTER_RETRY_S = env.int("AGENT_REGISTER_RETRY_S", default=120)
# From the reboot into the installed OS to its first-boot callback.
INSTALL_VERIFY_DEADLINE_S = env.int("INSTALL_VERIFY_DEADLINE_S", default=900)
# A worker step (one BMC call or file write) running longer than this was lost with its worker.
STEP_RUN_TIMEOUT_S = env.int("STEP_RUN_TIMEOUT_S", default=120)
# Transient failures (BMC did not answer, busy) are retried with exponential backoff and jitter
# up to this many attempts per step; authentication errors are never retried.
STEP_MAX_ATTEMPTS = env.int("STEP_MAX_ATTEMPTS", default=5)
STEP_RETRY_BASE_S = env.float("STEP_RETRY_BASE_S", default=5.0)
STEP_RETRY_MAX_S = env.float("STEP_RETRY_MAX_S", default=120.0)
# --- Discovery (installs/discovery.py): unknown machines that network-boot register their hardware -----------
# A registered machine's agent asks for a task this often; a technician's accept or discard reaches it within it.
DISCOVERY_POLL_S = env.float("DISCOVERY_POLL_S", default=5.0)
# Registrations are unauthenticated: one source address may register this many times a minute (a rack's machines
# each have their own address; a machine that registers more is looping or hostile).
DISCOVERY_REGISTER_PER_MIN = env.int("DISCOVERY_REGISTER_PER_MIN", default=10)
# Polls, fact reports and task completions from one address: at most this many a second (an agent polls every
# DISCOVERY_POLL_S, and answers a task right after the poll that handed it out).
DISCOVERY_CALLS_PER_S = env.int("DISCOVERY_CALLS_PER_S", default=3)
# A site holds at most this many waiting registrations: a flood of forged MACs fills the list only this far, and
# the page and the API stay usable. Accepting or discarding frees room.
DISCOVERY_MAX_WAITING = env.int("DISCOVERY_MAX_WAITING", default=1000)
# A waiting registration silent for this long may be taken over by a registration of the same MAC with another
# key: the machine rebooted and its memory OS lost the key. A live agent polls far more often, so a forger on
# the network cannot take over a machine that is still there.
DISCOVERY_REKEY_AFTER_S = env.int("DISCOVERY_REKEY_AFTER_S", default=600)
# Every site's TFTP root is brought in line with inventory this often (installs/discovery_boot.py), besides on
# every change of a site or a NIC: a change whose job was lost with Redis is put right within this.
PXE_RECONCILE_INTERVAL_S = env.int("PXE_RECONCILE_INTERVAL_S", default=300)
# --- SSH through the sites' jump hosts (access app, docs/ssh.md) -----------------------------------
# Per hop: a bastion that takes longer than this to answer is down for practical purposes; each hop
# of a chain waits for its own, so a three-hop chain fails within three times this.
SSH_CONNECT_TIMEOUT_S = env.float("SSH_CONNECT_TIMEOUT_S", default=10.0)
# Machines one `ssh_run` talks to at once: bastions limit concurrent sessions (OpenSSH MaxStartups 10).
SSH_MAX_PARALLEL = env.int("SSH_MAX_PARALLEL", default=8)
# Every remote command ends by this time (killed on the machine too); its output is kept up to this size.
SSH_COMMAND_TIMEOUT_S = env.float("SSH_COMMAND_TIMEOUT_S", default=60.0)
SSH_MAX_OUTPUT_BYTES = env.int("SSH_MAX_OUTPUT_BYTES", default=64 * 1024)
# The SSH verification of an installed machine through the site's jump host, all checks included.
SSH_VERIFY_TIMEOUT_S = env.int("SSH_VERIFY_TIMEOUT_S", default=120)
# --- Interactive SSH sessions (access/terminal.py): recorded, through the jump hosts ----------------------
# Where recordings (asciicast v2 files, one per session) live.
SSH_RECORDING_DIR = Path(env.str("SSH_RECORDING_DIR", default=str(VAR_DIR / "ssh-sessions")))
# A recording stops growing here (a `cat` of a huge log must not fill the disk); the session goes on.
SSH_RECORDING_MAX_BYTES = env.int("SSH_RECORDING_MAX_BYTES", default=50 * 1024 * 1024)
# Ended sessions and their recordings are deleted this many days after they ended; 0 keeps them forever.
SSH_RECORDING_RETENTION_DAYS = env.int("SSH_RECORDING_RETENTION_DAYS", default=180)
# The searchable text of a session (escapes stripped) is kept up to this size.
SSH_TRANSCRIPT_MAX_CHARS = env.int("SSH_TRANSCRIPT_MAX_CHARS", default=1024 * 1024)
# A running session writes its counters, transcript and heartbeat this often: what a crash loses, and how
# soon oversight pages see the text. A session silent for three of these has no process left.
SSH_SESSION_FLUSH_S = env.float("SSH_SESSION_FLUSH_S", default=10.0)
# The retention sweep (and the settling of sessions whose process died) runs this often.
SSH_SESSION_SWEEP_INTERVAL_S = env.int("SSH_SESSION_SWEEP_INTERVAL_S", default=3600)
# How often the sweeper looks for passed deadlines, lost workers and lost jobs.
SWEEP_INTERVAL_S = env.int("SWEEP_INTERVAL_S", default=15)
# A step whose job never came (lost with Redis, at a failover or a restart) is queued again this long after the
# step before it finished: longer than a busy site's queue takes to reach a job, so a slow job is not doubled.
SWEEP_LOST_JOB_AFTER_S = env.int("SWEEP_LOST_JOB_AFTER_S", default=60)
# /healthz calls a periodic job overdue when its last run ended more than two periods plus this ago:
# one late period is a slow run or a worker restarting, two mean nothing runs it any more.
PERIODIC_GRACE_S = env.int("PERIODIC_GRACE_S", default=30)
# An idle RQ worker renews its registration this often; /healthz counts a worker silent for
# WORKER_STALE_S as gone. The default RQ pace (every 405 s) would make every idle worker look dead.
WORKER_HEARTBEAT_S = env.int("WORKER_HEARTBEAT_S", default=20)
WORKER_STALE_S = env.int("WORKER_STALE_S", default=90)
# /metrics (config/metrics.py) answers a scraper that sends `Authorization: Bearer <METRICS_TOKEN>` or whose
# address is in METRICS_ALLOWED_CIDRS (comma separated; behind nginx daphne's address is the one nginx saw).
# The default is this host only, so a Prometheus elsewhere needs one of the two; both empty turns /metrics off (404).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_CIDRS = env.list("METRICS_ALLOWED_CIDRS", default=["127.0.0.0/8", "::1/128"])
for _cidr in METRICS_ALLOWED_CIDRS:
    try:
        ipaddress.ip_network(_cidr, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"METRICS_ALLOWED_CIDRS: {_cidr!r} is not a network (e.g. 10.0.0.0/8)") from None
# Failed installs are e-mailed here (comma separated) when e-mail is configured (EMAIL_URL).
ALERT_EMAILS = env.list("ALERT_EMAILS", default=[])
vars().update(env.email_url("EMAIL_URL", default="consolemail://" if DEV else "dummymail://"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="provisioner@localhost")

# Webhooks (webhooks/): one HTTP attempt waits this long for an answer. Short: a slow receiver holds one
# delivery worker, never an install, and a timed-out attempt is simply retried.
WEBHOOK_TIMEOUT_S = env.float("WEBHOOK_TIMEOUT_S", default=5.0)
# A failed attempt is retried after WEBHOOK_RETRY_BASE_S, doubling each time up to WEBHOOK_RETRY_MAX_S, for
# WEBHOOK_RETRY_FOR_S after the event: a receiver down for a maintenance night still gets every event.
WEBHOOK_RETRY_BASE_S = env.float("WEBHOOK_RETRY_BASE_S", default=30.0)
WEBHOOK_RETRY_MAX_S = env.float("WEBHOOK_RETRY_MAX_S", default=3600.0)
WEBHOOK_RETRY_FOR_S = env.float("WEBHOOK_RETRY_FOR_S", default=86400.0)
# A delivery keeps this much of the receiver's answer, for the admin to read.
WEBHOOK_ANSWER_MAX_CHARS = env.int("WEBHOOK_ANSWER_MAX_CHARS", default=2000)
# The webhook sweep re-queues due deliveries whose job was lost (Redis restarted, a worker killed mid-send).
WEBHOOK_SWEEP_INTERVAL_S = env.int("WEBHOOK_SWEEP_INTERVAL_S", default=60)

# Every websocket's consumer waits on Redis with BZPOPMIN for 5 s at a time (channels_redis); a socket
# timeout at or under that (redis-py 8 defaults to 5 s) ends idle waits with a timeout error and closes
# every idle browser tab's websocket every few seconds. Longer than the wait, short enough to notice a
# Redis that stopped answering.
CHANNEL_LAYER_SOCKET_TIMEOUT_S = env.float("CHANNEL_LAYER_SOCKET_TIMEOUT_S", default=30.0)
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "config.channel_layer.RedisChannelLayer",  # waits out Redis restarts
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "socket_timeout": CHANNEL_LAYER_SOCKET_TIMEOUT_S}],
            "prefix": "provisioner:channels",
        },
    },
}

# Behind a TLS-terminating proxy in production. Machines being installed fetch boot scripts,
# answer files and the agent API over plain HTTP (PXE ROMs and installers rarely do TLS with
# a private CA), so those paths are exempt from the HTTPS redirect.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_TLS_PROXY", default=not DEV) else None
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEV)
SECURE_REDIRECT_EXEMPT = [r"^boot/", r"^i/", r"^api/agent/", r"^api/v1/discovery/", r"^healthz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEV else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = False
# HSTS for subdomains and the browsers' preload list reach beyond this service (other hosts in
# the operator's domain; a list that cannot be left quickly): the operator's call, not ours.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_INCLUDE_SUBDOMAINS else ["security.W005"]
SILENCED_SYSTEM_CHECKS += ["security.W021"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEV)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEV)
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=12 * 3600)  # one shift
X_FRAME_OPTIONS = "DENY"

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# Django's documented hook for configuring logging: the dictConfig below, plus redaction of every record as it
# is made (core/redaction.py), so no handler or capture, ours or a library's, ever sees an install credential.
LOGGING_CONFIG = "core.redaction.configure_logging"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"redact": {"()": "core.redaction.RedactSecretsFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"pyghmi": {"level": "WARNING"}},
}

if not DEV and DEBUG:
    raise ImproperlyConfigured("DEBUG=1 is only allowed with PROVISIONER_DEV=1: debug pages show settings and data.")
