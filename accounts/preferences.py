"""What a person chooses for themselves on the pages, kept across visits and browsers: saved views (a named set
of a list's filters) and the columns of a list. Stored per user here rather than in the session, so a choice made
at one desk is there at the next; stored as the page's own query string and column keys, so the page that reads
them checks them again as it checks any request (a saved view of a filter that no longer means anything gets the
page's own 400, never a 500).

Every write is a service function below: one transaction, the user's rows of that page locked, an audit row."""

from __future__ import annotations

from django.conf import settings
from django.db import models, transaction

from audit.service import Actor, record

# A person's saved views on one page: enough for every shift's habits, and a bound on what one user may store.
MAX_SAVED_VIEWS = 30
NAME_MAX = 100
QUERY_MAX = 1000


class PageName(models.TextChoices):
    INSTALLS = "installs"  # the install list (/installs/)
    MACHINES = "machines"  # the machine list (/machines/)


class SavedView(models.Model):
    """A named set of filters of a list page, as its query string (without the page number)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_views")
    page = models.CharField(max_length=16, choices=PageName.choices)
    name = models.CharField(max_length=NAME_MAX)
    query = models.CharField(max_length=QUERY_MAX, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "accounts"
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["user", "page", "name"], name="saved_view_name_unique_per_user_page"),
        ]

    def __str__(self):
        return f"{self.name} ({self.page})"


class PageColumns(models.Model):
    """The columns a person shows on a list page, by the page's own column keys."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="page_columns")
    page = models.CharField(max_length=16, choices=PageName.choices)
    columns = models.JSONField(default=list)
    changed_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "accounts"
        verbose_name_plural = "page columns"
        constraints = [models.UniqueConstraint(fields=["user", "page"], name="page_columns_one_per_user_page")]

    def __str__(self):
        return f"{self.page} columns"


class PreferenceRefused(Exception):
    """The value cannot be stored; ``field`` names the form field, the message says what it takes."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _clean_name(name: str) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise PreferenceRefused("name", "Give the view a name.")
    if len(name) > NAME_MAX or "\x00" in name:
        raise PreferenceRefused("name", f"A name of at most {NAME_MAX} characters, without NUL.")
    return name


@transaction.atomic(durable=True)
def save_view(user, page: str, name: str, query: str, *, actor: Actor) -> SavedView:
    """Save ``query`` under ``name`` for ``user`` on ``page``; a view of the same name is replaced."""
    name = _clean_name(name)
    if len(query) > QUERY_MAX or "\x00" in query:
        raise PreferenceRefused("query", f"The filters take more than {QUERY_MAX} characters; narrow them.")
    mine = list(SavedView.objects.select_for_update().filter(user=user, page=page))
    existing = next((v for v in mine if v.name == name), None)
    if existing is None and len(mine) >= MAX_SAVED_VIEWS:
        raise PreferenceRefused("name", f"You have {MAX_SAVED_VIEWS} saved views here already; delete one first.")
    if existing is None:
        view = SavedView.objects.create(user=user, page=page, name=name, query=query)
    else:
        view = existing
        view.query = query
        view.save(update_fields=["query"])
    record(actor, "view.save", view, {"page": page, "name": name, "query": query})
    return view


@transaction.atomic(durable=True)
def delete_view(user, view_id: int, *, actor: Actor) -> SavedView:
    """Delete one of ``user``'s saved views (SavedView.DoesNotExist for another's, as for none)."""
    view = SavedView.objects.select_for_update().get(pk=view_id, user=user)
    record(actor, "view.delete", view, {"page": view.page, "name": view.name})
    view.delete()
    return view


@transaction.atomic(durable=True)
def set_columns(user, page: str, columns: list[str], *, allowed: tuple[str, ...], actor: Actor) -> list[str]:
    """Show ``columns`` (keys among ``allowed``, kept in ``allowed``'s order) on ``page`` for ``user``."""
    unknown = sorted(set(columns) - set(allowed))
    if unknown:
        raise PreferenceRefused("column", f"No such column: {', '.join(unknown)[:200]}. Use {', '.join(allowed)}.")
    chosen = [c for c in allowed if c in set(columns)]
    row = PageColumns.objects.select_for_update().filter(user=user, page=page).first()
    if row is None:
        row = PageColumns.objects.create(user=user, page=page, columns=chosen)
    else:
        row.columns = chosen
        row.save(update_fields=["columns", "changed_at"])
    record(actor, "columns.set", row, {"page": page, "columns": chosen})
    return chosen


def views_of(user, page: str) -> list[SavedView]:
    return list(SavedView.objects.filter(user=user, page=page).only("pk", "name", "query")) if user.pk else []


def columns_of(user, page: str, *, allowed: tuple[str, ...], default: tuple[str, ...]) -> list[str]:
    """The columns ``user`` chose on ``page``, or ``default``; a key a later version dropped is left out."""
    stored = PageColumns.objects.filter(user=user, page=page).values_list("columns", flat=True).first()
    if stored is None:
        return list(default)
    return [c for c in allowed if c in set(stored)]
