import time

import redis
from django.core.management.base import BaseCommand

from core import queues
from inventory.models import Site

# RQ's worker quits when Redis fails outside its wait for jobs (recording a job that ended while Redis
# was away); the command starts a new one once Redis answers again, checking this often.
REDIS_WAIT_S = 2.0


class Command(BaseCommand):
    help = (
        "Run an RQ worker for the given sites' queues, or every site's, plus the default queue (the periodic "
        "jobs and alerts) and the webhook deliveries' queue. Run one on each site's PXE host with --site <slug>. "
        "Delayed jobs and periodic work are scheduled by `manage.py scheduler`, which must run too."
    )

    def add_arguments(self, parser):
        parser.add_argument("--site", action="append", dest="sites", help="Site slug; repeat for several.")
        parser.add_argument("--no-default", action="store_true", help="Do not serve the control plane's queues.")
        parser.add_argument(
            "--control-only",
            action="store_true",
            help="Serve only the control plane's queues (sweeper, power sync, webhooks).",
        )
        parser.add_argument(
            "--fork",
            action="store_true",
            help="Fork a process per job (RQ's Worker). The default runs jobs in the worker process "
            "(SimpleWorker): jobs are short and BMC sessions stay warm between them.",
        )
        parser.add_argument(
            "--burst",
            action="store_true",
            help="Move the delayed jobs that are due onto the queues, run what is queued, then stop (tests).",
        )

    def handle(self, *args, sites, no_default, control_only, fork, burst, **options):
        slugs = [] if control_only else sites or list(Site.objects.values_list("slug", flat=True))
        names = [queues.site_queue_name(s) for s in slugs]
        if not no_default:
            # Webhook deliveries last: control-plane jobs go first, and a slow receiver holds only this worker.
            names[:0] = [queues.DEFAULT_QUEUE, queues.WEBHOOKS_QUEUE]
        self.stdout.write(f"Serving queues: {', '.join(names)}")
        while True:
            worker = queues.worker(names, fork=fork)
            # A long-running worker schedules nothing (manage.py scheduler does, and comes back by itself
            # after a Redis restart; RQ's per-worker scheduler does not). A burst run has no scheduler
            # beside it, so it moves what is due itself, once.
            try:
                worker.work(with_scheduler=burst, burst=burst)
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                pass  # its last words to Redis (the death notice) found no Redis either
            if burst or worker._shutdown_requested_date is not None:  # asked to stop (SIGTERM, Ctrl-C)
                return
            self.stderr.write("The worker stopped on a Redis error; starting again when Redis answers.")
            self.wait_for_redis()

    def wait_for_redis(self) -> None:
        while True:
            try:
                queues.connection().ping()
                return
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                time.sleep(REDIS_WAIT_S)
