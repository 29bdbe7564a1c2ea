import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from audit.service import Actor, record


class Command(BaseCommand):
    help = "Create the first admin user with a generated password, printed once. Does nothing if one exists."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write(
                "An admin user already exists (its password was printed when it was created; "
                f"reset it with: manage.py changepassword {username})."
            )
            return
        password = secrets.token_urlsafe(15)
        user = User.objects.create_superuser(username=username, email="", password=password)
        record(Actor.system("ensure_admin"), "auth.user.add", user, {"is_superuser": True})
        self.stdout.write(self.style.SUCCESS(f"Created admin user '{username}' with password: {password}"))
        self.stdout.write("This password is shown only now; keep it or reset it with manage.py changepassword.")
