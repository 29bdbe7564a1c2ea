from django.contrib.auth.models import AbstractUser


class User(AbstractUser):
    """A person who uses the dashboard. Custom from the first migration so fields can be added later."""

    class Meta:
        db_table = "accounts_user"
