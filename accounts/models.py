from django.contrib.auth.models import AbstractUser

from .api_tokens import ApiToken  # noqa: F401  (defined beside its services; imported so Django registers it)
from .preferences import PageColumns, SavedView  # noqa: F401  (likewise)


class User(AbstractUser):
    """A person who uses the dashboard. Custom from the first migration so fields can be added later."""

    class Meta:
        db_table = "accounts_user"
