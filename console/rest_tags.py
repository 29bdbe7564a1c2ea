"""REST for tags (added to the v1 API by console/rest.py): listed and read by viewers, written by admins as every
inventory write is. A machine's tags are written with the machine (POST/PATCH machines, ``tags``); GET machines
filters on them (``tag``, several times for all of them). Writes go through inventory/tagging.py."""

from __future__ import annotations

from typing import Annotated, Literal

from django.db.models import Count
from ninja import Field, Path, Query, Router, Schema

from accounts.roles import Role
from core.edge import Text
from core.paging import PageParams, page_of, page_schema
from core.problems import Problem
from inventory import tagging
from inventory.models import Tag
from inventory.tag_model import TagColour

from .rest_inventory import WRITES, StrictIn, actor, answered, need, written

router = Router(tags=["tags"])

TagName = Annotated[Text, Field(min_length=1, max_length=50, description="Lower-case letters, digits, - and _.")]
Colour = Literal[tuple(TagColour.values)]  # type: ignore[valid-type]


class TagOut(Schema):
    name: str
    colour: str = Field(description="A name from the palette, or empty.")
    description: str
    machines: int = Field(description="How many machines have it (GET machines?tag= lists them).")


class TagChangeIn(StrictIn):
    name: TagName = None
    colour: Colour = Field(None, description=", ".join(v or '""' for v in TagColour.values) + ".")
    description: Annotated[Text, Field(max_length=200)] = None


class TagIn(TagChangeIn):
    name: TagName


class TagFilters(PageParams):
    q: Text = Field("", max_length=50, description="The name contains this.")


TagPage = page_schema(TagOut, "TagPage")


def _tags():
    return Tag.objects.annotate(machine_count=Count("machines")).order_by("name")


def _tag(tag: Tag) -> dict:
    count = getattr(tag, "machine_count", None)
    return {
        "name": tag.name,
        "colour": tag.colour,
        "description": tag.description,
        "machines": count if count is not None else tag.machines.count(),
    }


@router.get("tags", response=TagPage)
def list_tags(request, filters: Query[TagFilters]):
    need(request, Role.VIEWER)
    tags = _tags().filter(name__icontains=filters.q.lower()) if filters.q else _tags()
    return page_of(tags, filters, _tag)


@router.get("tags/{name}", response=TagOut)
def get_tag(request, name: Path[Text]):
    need(request, Role.VIEWER)
    return answered(_tags().filter(name=name).first(), _tag)


@router.post("tags", response={201: TagOut, **WRITES})
def create_tag(request, body: TagIn):
    need(request, Role.ADMIN)
    return answered(written(tagging.create_tag, body.model_dump(exclude_unset=True), actor(request)), _tag, 201)


@router.patch("tags/{name}", response={200: TagOut, **WRITES})
def update_tag(request, name: Path[Text], body: TagChangeIn):
    """Rename (its machines keep it), recolour or describe it."""
    need(request, Role.ADMIN)
    return answered(written(tagging.update_tag, name, body.model_dump(exclude_unset=True), actor(request)), _tag)


@router.delete("tags/{name}", response={204: None, 409: Problem})
def delete_tag(request, name: Path[Text]):
    """Takes it off every machine that has it; the audit entry names them."""
    need(request, Role.ADMIN)
    return answered(written(tagging.delete_tag, name, actor(request)) or None, lambda _: None, 204)
