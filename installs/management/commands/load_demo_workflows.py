"""The demo's workflow library: its scripts, the example workflow the lab profile runs, and that profile
(``make run``). Idempotent: an unchanged document or script keeps its version."""

from pathlib import Path

from django.core.management.base import BaseCommand
from django.db import transaction

from audit.service import Actor
from installs import library
from inventory.models import OSProfile

DEMO = Path(__file__).resolve().parents[2] / "demo"
SCRIPTS = {
    "lab-disk-report": "Lists the disks the agent sees, as a commissioning script would.",
    "lab-pre-install": "Runs before the demo install writes the disks.",
    "lab-post-install": "Runs after the demo install wrote the image.",
}
PROFILE = "lab-demo-scripted"


class Command(BaseCommand):
    help = "Load the demo workflow, its scripts and the profile lab-demo-scripted (needs load_demo first)."

    @transaction.atomic
    def handle(self, *args, **options):
        actor = Actor.system("load_demo_workflows")
        for name, description in SCRIPTS.items():
            body = (DEMO / f"{name}.sh").read_text()
            library.save_script(name, body, actor, description=description, timeout_s=120, safe_to_repeat=True)
        row, _ = library.save_workflow((DEMO / f"{PROFILE}.yaml").read_text(), actor)
        base = OSProfile.objects.filter(name="lab-demo-image").first()
        if base is None:
            self.stdout.write("No lab-demo-image profile (run load_demo first): only the library was loaded.")
            return
        copied = ("method", "kernel", "initrd", "kernel_args", "image_url", "image_sha256")
        fields = {f: getattr(base, f) for f in copied}
        OSProfile.objects.update_or_create(
            name=PROFILE,
            defaults={**fields, "workflow": row.name, "description": "The lab's image through a workflow with scripts"},
        )
        self.stdout.write(f"Workflow {row.name} v{row.version} and {len(SCRIPTS)} scripts; profile {PROFILE}.")
