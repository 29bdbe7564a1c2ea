"""RQ_QUEUES for django-rq's pages: the fixed queues and one per site, read when django-rq asks.

Installs run on the site queues (core.queues), which come and go with the sites, so a dict built when
settings load would list only the fixed ones. django-rq reads ``settings.RQ_QUEUES`` on every use
(its settings module looks it up per call), so a mapping that asks the database then is enough.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from django.db import DatabaseError


class SiteQueues(Mapping):
    def __init__(self, fixed: list[str], config: dict):
        self.fixed = fixed
        self.config = config

    def _names(self) -> list[str]:
        # Imported here: settings.py builds this object before Django's apps (and models) are loaded.
        from core.queues import site_queue_name
        from inventory.models import Site

        try:
            sites = [site_queue_name(slug) for slug in Site.objects.order_by("slug").values_list("slug", flat=True)]
        except DatabaseError:  # no database yet (before migrate): the fixed queues only
            sites = []
        return self.fixed + [name for name in sites if name not in self.fixed]

    def __getitem__(self, name: str) -> dict:
        if name in self.fixed or name in self._names():
            return self.config
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())
