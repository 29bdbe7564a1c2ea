from django.core.management.base import BaseCommand, CommandError

from core.text import a
from installs import render
from installs.library import plan_for
from installs.plan import PlanError
from inventory.models import Machine, OSProfile
from provisioner.pxe import TemplateError


class Command(BaseCommand):
    help = (
        "Print exactly what a machine would receive from a profile (with a placeholder token): "
        "manage.py render web01 --profile debian-12-preseed --file preseed"
    )

    def add_arguments(self, parser):
        parser.add_argument("hostname")
        parser.add_argument("--profile", required=True)
        parser.add_argument("--file", required=True, choices=render.PREVIEW_FILES, dest="what")

    def handle(self, *args, hostname, profile, what, **options):
        machine = Machine.objects.select_related("rack__site").filter(hostname=hostname.lower()).first()
        if machine is None:
            raise CommandError(f"No machine named {hostname}.")
        profile_obj = OSProfile.objects.filter(name=profile).first()
        if profile_obj is None:
            raise CommandError(f"No profile named {profile}.")
        try:
            plan = plan_for(machine, profile_obj, for_install=False)
            text = render.preview(plan, what, hostname=machine.hostname, facts=machine.facts or {})
            self.stdout.write(text, ending="")
        except PlanError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        except KeyError:
            raise CommandError(f"{a(profile_obj.method, capital=True)} profile has no {what} file.") from None
        except TemplateError as exc:
            raise CommandError(f"Profile {profile_obj.name}: {exc}") from None
        except ValueError as exc:
            raise CommandError(f"{machine.hostname} with {profile_obj.name}: {exc}") from None
