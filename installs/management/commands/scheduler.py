from django.core.management.base import BaseCommand

from core import queues
from installs.periodic import SCHEDULE, Scheduler


class Command(BaseCommand):
    help = (
        "Run the scheduler: every periodic job (installs/periodic.py: "
        + ", ".join(job.name for job in SCHEDULE)
        + ") once per period, and delayed jobs (retries, staggered power-ons) onto their queues when due. "
        "Run one per deployment; a second on another host is a harmless standby. It waits out Redis restarts."
    )

    def handle(self, *args, **options):
        Scheduler(queues.connection()).start()
