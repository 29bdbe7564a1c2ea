"""The one envelope every list in the REST API answers with, and the parameters that page it.

``GET /api/v1/<things>?page=2&per_page=50`` answers::

    {"count": 1234, "page": 2, "per_page": 50, "results": [...]}

``count`` is every row the filters match; ``results`` is the page's rows, in the list's own order. A
page past the end is an empty ``results``, not an error. Each list's filters extend ``PageParams``, and
its answer is ``page_of`` over the filtered queryset, declared in OpenAPI with ``page_schema``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.db.models import QuerySet
from ninja import Schema
from pydantic import Field, create_model

from core.edge import Page

PER_PAGE_DEFAULT = 100
PER_PAGE_MAX = 1000


class PageParams(Schema):
    """``page`` (from 1) and ``per_page`` (1 to 1,000): what every list takes besides its filters."""

    page: Page = 1
    per_page: int = Field(PER_PAGE_DEFAULT, ge=1, le=PER_PAGE_MAX)


def page_schema(item: type, name: str) -> type[Schema]:
    """The envelope's schema for a list of ``item``, named ``name`` in the OpenAPI document."""
    return create_model(
        name,
        __base__=Schema,
        count=(int, ...),
        page=(int, ...),
        per_page=(int, ...),
        results=(list[item], ...),
    )


def page_of(rows: QuerySet | Sequence, params: PageParams, serialize: Callable[[Any], Any]) -> dict:
    """One page of ``rows`` (a queryset, sliced in the database, or a list) in the envelope."""
    start = (params.page - 1) * params.per_page
    count = rows.count() if isinstance(rows, QuerySet) else len(rows)
    chunk = rows[start : start + params.per_page] if start < count else []
    return {
        "count": count,
        "page": params.page,
        "per_page": params.per_page,
        "results": [serialize(row) for row in chunk],
    }


def whole(rows: QuerySet | Sequence, serialize: Callable[[Any], Any]) -> dict:
    """Every row of ``rows`` as one page of the envelope: what a write that makes several things (POST installs,
    a retry) answers with, so that every list in the API has the same shape."""
    results = [serialize(row) for row in rows]
    return {"count": len(results), "page": 1, "per_page": max(len(results), 1), "results": results}
