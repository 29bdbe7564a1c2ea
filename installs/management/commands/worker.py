from django.core.management.base import BaseCommand
from rq import SimpleWorker, Worker

from installs.sweeper import ensure_sweeper_scheduled
from inventory.models import Site
from inventory.power import ensure_power_sync_scheduled
from provisioner import queues


class Command(BaseCommand):
    help = (
        "Run an RQ worker (with its scheduler) for the given sites' queues, or every site's, plus the "
        "default queue. Run one on each site's PXE host with --site <slug>."
    )

    def add_arguments(self, parser):
        parser.add_argument("--site", action="append", dest="sites", help="Site slug; repeat for several.")
        parser.add_argument("--no-default", action="store_true", help="Do not serve the control plane's queue.")
        parser.add_argument(
            "--control-only", action="store_true", help="Serve only the control plane's queue (sweeper, power sync)."
        )
        parser.add_argument(
            "--fork",
            action="store_true",
            help="Fork a process per job (RQ's Worker). The default runs jobs in the worker process "
            "(SimpleWorker): jobs are short and BMC sessions stay warm between them.",
        )
        parser.add_argument("--burst", action="store_true", help="Stop when the queues are empty (tests).")

    def handle(self, *args, sites, no_default, control_only, fork, burst, **options):
        slugs = [] if control_only else sites or list(Site.objects.values_list("slug", flat=True))
        names = [queues.site_queue_name(s) for s in slugs]
        if not no_default:
            names.insert(0, queues.DEFAULT_QUEUE)
            if not burst:
                if ensure_power_sync_scheduled():
                    self.stdout.write("Scheduled the periodic power sync.")
                if ensure_sweeper_scheduled():
                    self.stdout.write("Scheduled the install sweeper.")
        worker_class = Worker if fork else SimpleWorker
        worker = worker_class([queues.get_queue(n) for n in names], connection=queues.connection())
        self.stdout.write(f"Serving queues: {', '.join(names)}")
        worker.work(with_scheduler=True, burst=burst)
