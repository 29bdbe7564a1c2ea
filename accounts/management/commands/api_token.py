"""manage.py api_token <user> [--name NAME]: make an API token and print its key once."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.api_tokens import create_token
from audit.service import Actor


class Command(BaseCommand):
    help = "Create an API token for a user and print the key (shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="created with manage.py api_token")

    def handle(self, *args, username, name, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        _, key = create_token(user, name, actor=Actor.system("manage.py api_token"))
        self.stdout.write(key)
