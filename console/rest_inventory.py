"""REST for the inventory's sites, racks and OS profiles (added to the v1 API by console/rest.py), and the deletion
of a workflow of the library.

Read by viewers; written by admins, as the admin site is (accounts/roles.py: inventory and profiles are the admin
role's). Every write goes through inventory/editing.py (installs/library.py for a workflow), which checks it as the
admin does and audits it. A body with a field the operation does not take is a 400 naming it; invalid input a 400
naming the field, before any write; a conflict with inventory as it stands a 409 whose ``problems`` say why.
"""

from __future__ import annotations

from typing import Annotated, Literal

from django.core.exceptions import ValidationError
from ninja import Field, Path, Query, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import ConfigDict, StrictBool

from accounts.roles import Role, has_role
from audit.service import Actor
from core import problems
from core.edge import Text
from core.paging import PageParams, page_of, page_schema
from core.problems import Problem
from installs import library
from inventory import editing
from inventory.models import MAX_RACK_U, InstallMethod, OSProfile, Rack, Site

router = Router(tags=["inventory"])

WRITES = {400: Problem, 409: Problem}
Name = Annotated[Text, Field(min_length=1, max_length=100)]
Rack_U = Annotated[int, Field(ge=1, le=MAX_RACK_U)]


class StrictIn(Schema):
    """A body that refuses a field it does not declare (a typo must not be quietly dropped)."""

    model_config = ConfigDict(extra="forbid")


def need(request, role: Role) -> None:
    if not has_role(request.auth, role):
        raise HttpError(403, f"This needs the {role.label} role.")


def actor(request) -> Actor:
    return Actor.for_user(request.auth)


def invalid(exc: ValidationError):
    """A 400 naming each field the service refused (``nics.0.mac``), with a template's line where it says one."""
    messages = exc.message_dict if hasattr(exc, "error_dict") else {"body": exc.messages}
    errors = []
    for field, texts in messages.items():
        loc = ["body", "body", *field.split(".")] if field != "body" else ["body", "body"]
        for text in texts:
            line = editing.error_line(text) if field == "template" else None
            errors.append({"loc": loc, "msg": text, "type": "value_error", "line": line})
    first = next(iter(messages))
    return problems.response(400, f"{first}: {errors[0]['msg']}", field=first, errors=errors)


def refused(exc: editing.EditRefused):
    return problems.response(409, "Refused: " + "; ".join(exc.problems), problems=exc.problems)


def written(call, *args, **kwargs):
    """Run a service call: its result, or the 400 or 409 answer."""
    try:
        return call(*args, **kwargs)
    except ValidationError as exc:
        return invalid(exc)
    except editing.EditRefused as exc:
        return refused(exc)


def answered(result, render, status: int = 200):
    """The service's result rendered, a refusal as it is, or a 404 for None (no such row)."""
    if result is None:
        raise HttpError(404, "Not Found")
    if hasattr(result, "status_code"):
        return result
    return Status(status, render(result))


# --- sites ---------------------------------------------------------------------------------------------------


class SiteOut(Schema):
    slug: str
    name: str
    tftp_root: str
    base_url: str
    domain: str
    dns_servers: str
    bmc_username: str = Field(description="The default BMC user of the site's BMCs that name none.")
    bmc_password_set: bool = Field(description="Whether a default BMC password is stored (it is write-only).")
    memory_os: str | None = Field(None, description="The memory OS profile's name.")
    create_bmc_user: bool
    discovery: bool
    provisioning_networks: str
    racks: list[str] = Field(description="Its racks, as site/rack.")


class SiteChangeIn(StrictIn):
    name: Name = None
    tftp_root: Annotated[Text, Field(min_length=1, max_length=255)] = None
    base_url: Annotated[Text, Field(min_length=1, max_length=200)] = None
    domain: Annotated[Text, Field(max_length=200)] = None
    dns_servers: Annotated[Text, Field(max_length=200)] = None
    bmc_username: Annotated[Text, Field(max_length=64)] = None
    bmc_password: Annotated[Text, Field(max_length=1000)] = Field(
        None, description='Write-only, stored encrypted; "" clears it.', json_schema_extra={"writeOnly": True}
    )
    memory_os: Annotated[Text, Field(max_length=64)] | None = Field(None, description="An image profile's name.")
    create_bmc_user: StrictBool = None
    discovery: StrictBool = None
    provisioning_networks: Annotated[Text, Field(max_length=500)] = None


class SiteIn(SiteChangeIn):
    slug: Annotated[Text, Field(min_length=1, max_length=50, description="Its queue is site-<slug>.")]
    name: Name
    tftp_root: Annotated[Text, Field(min_length=1, max_length=255)]
    base_url: Annotated[Text, Field(min_length=1, max_length=200)]


SitePage = page_schema(SiteOut, "SitePage")


def _site(site: Site) -> dict:
    return {
        "slug": site.slug,
        "name": site.name,
        "tftp_root": site.tftp_root,
        "base_url": site.base_url,
        "domain": site.domain,
        "dns_servers": site.dns_servers,
        "bmc_username": site.bmc_username,
        "bmc_password_set": site.has_bmc_password,
        "memory_os": site.memory_os.name if site.memory_os else None,
        "create_bmc_user": site.create_bmc_user,
        "discovery": site.discovery,
        "provisioning_networks": site.provisioning_networks,
        "racks": [str(rack) for rack in site.racks.all()],
    }


def _sites():
    return Site.objects.select_related("memory_os").prefetch_related("racks__site").order_by("slug")


@router.get("sites", response=SitePage)
def list_sites(request, params: Query[PageParams]):
    need(request, Role.VIEWER)
    return page_of(_sites(), params, _site)


@router.get("sites/{slug}", response=SiteOut)
def get_site(request, slug: Path[Text]):
    need(request, Role.VIEWER)
    return answered(_sites().filter(slug=slug).first(), _site)


@router.post("sites", response={201: SiteOut, **WRITES})
def create_site(request, body: SiteIn):
    need(request, Role.ADMIN)
    return answered(written(editing.create_site, body.model_dump(exclude_unset=True), actor(request)), _site, 201)


@router.patch("sites/{slug}", response={200: SiteOut, **WRITES})
def update_site(request, slug: Path[Text], body: SiteChangeIn):
    """Change the fields given (the slug, which names the site's queue, stays)."""
    need(request, Role.ADMIN)
    return answered(written(editing.update_site, slug, body.model_dump(exclude_unset=True), actor(request)), _site)


@router.delete("sites/{slug}", response={204: None, 409: Problem})
def delete_site(request, slug: Path[Text]):
    """Refused (409) while the site has racks or PDUs; its jump hosts, SSH settings and discovered machines go."""
    need(request, Role.ADMIN)
    return answered(written(editing.delete_site, slug, actor(request)) or None, lambda _: None, 204)


# --- racks ---------------------------------------------------------------------------------------------------


class RackOut(Schema):
    id: int
    site: str
    name: str
    path: str = Field(description="site/rack: how machines, the import and the discovery accept name it.")
    height_u: int
    machines: list[str] = Field(description="Hostnames, from the bottom up.")


class RackChangeIn(StrictIn):
    name: Annotated[Text, Field(min_length=1, max_length=50)] = None
    height_u: Rack_U = None


class RackIn(RackChangeIn):
    site: Annotated[Text, Field(min_length=1, max_length=50, description="The site's slug.")]
    name: Annotated[Text, Field(min_length=1, max_length=50)]


class RackFilters(PageParams):
    site: Text = ""


RackPage = page_schema(RackOut, "RackPage")


def _rack(rack: Rack) -> dict:
    return {
        "id": rack.pk,
        "site": rack.site.slug,
        "name": rack.name,
        "path": str(rack),
        "height_u": rack.height_u,
        "machines": [m.hostname for m in sorted(rack.machines.all(), key=lambda m: m.position_u or 0)],
    }


def _racks():
    return Rack.objects.select_related("site").prefetch_related("machines").order_by("site__slug", "name")


@router.get("racks", response=RackPage)
def list_racks(request, filters: Query[RackFilters]):
    need(request, Role.VIEWER)
    racks = _racks().filter(site__slug=filters.site) if filters.site else _racks()
    return page_of(racks, filters, _rack)


@router.get("racks/{site}/{name}", response=RackOut)
def get_rack(request, site: Path[Text], name: Path[Text]):
    need(request, Role.VIEWER)
    return answered(_racks().filter(site__slug=site, name=name).first(), _rack)


@router.post("racks", response={201: RackOut, **WRITES})
def create_rack(request, body: RackIn):
    need(request, Role.ADMIN)
    return answered(written(editing.create_rack, body.model_dump(exclude_unset=True), actor(request)), _rack, 201)


@router.patch("racks/{site}/{name}", response={200: RackOut, **WRITES})
def update_rack(request, site: Path[Text], name: Path[Text], body: RackChangeIn):
    """Rename it, or change its height (not below the machines in it)."""
    need(request, Role.ADMIN)
    values = body.model_dump(exclude_unset=True)
    return answered(written(editing.update_rack, site, name, values, actor(request)), _rack)


@router.delete("racks/{site}/{name}", response={204: None, 409: Problem})
def delete_rack(request, site: Path[Text], name: Path[Text]):
    """Refused (409) while it holds machines."""
    need(request, Role.ADMIN)
    return answered(written(editing.delete_rack, site, name, actor(request)) or None, lambda _: None, 204)


# --- OS profiles ---------------------------------------------------------------------------------------------


class ProfileOut(Schema):
    name: str
    description: str
    method: str
    kernel: str
    initrd: str
    kernel_args: str
    template: str
    image_url: str
    image_sha256: str
    target_disk: str
    root_password_hash_set: bool = Field(description="Whether a root password hash is stored (it is write-only).")
    ssh_authorized_keys: str
    legacy_anaconda: bool
    workflow: str = Field(description="The workflow its installs run; empty: the stock one of its method.")


class ProfileChangeIn(StrictIn):
    name: Annotated[Text, Field(min_length=1, max_length=64)] = None
    description: Annotated[Text, Field(max_length=255)] = None
    method: Literal[tuple(InstallMethod.values)] = None  # type: ignore[valid-type]
    kernel: Annotated[Text, Field(min_length=1, max_length=255)] = None
    initrd: Annotated[Text, Field(min_length=1, max_length=255)] = None
    kernel_args: Annotated[Text, Field(max_length=1024)] = None
    template: Annotated[Text, Field(max_length=200_000)] = Field(
        None, description="Jinja2 (sandboxed); rendered for an example machine when saved: an error names its line."
    )
    image_url: Annotated[Text, Field(max_length=500)] = None
    image_sha256: Annotated[Text, Field(max_length=64)] = None
    target_disk: Annotated[Text, Field(max_length=100)] = None
    root_password_hash: Annotated[Text, Field(max_length=255)] = Field(
        None, description="crypt(3) hash; write-only.", json_schema_extra={"writeOnly": True}
    )
    ssh_authorized_keys: Annotated[Text, Field(max_length=100_000)] = None
    legacy_anaconda: StrictBool = None
    workflow: Annotated[Text, Field(max_length=64)] = None


class ProfileIn(ProfileChangeIn):
    name: Annotated[Text, Field(min_length=1, max_length=64)]
    method: Literal[tuple(InstallMethod.values)]  # type: ignore[valid-type]
    kernel: Annotated[Text, Field(min_length=1, max_length=255)]
    initrd: Annotated[Text, Field(min_length=1, max_length=255)]


ProfilePage = page_schema(ProfileOut, "ProfilePage")


def _profile(p: OSProfile) -> dict:
    data = {name: getattr(p, name) for name in editing.PROFILE_FIELDS if name != "root_password_hash"}
    return {**data, "root_password_hash_set": bool(p.root_password_hash)}


@router.get("profiles", response=ProfilePage)
def list_profiles(request, params: Query[PageParams]):
    need(request, Role.VIEWER)
    return page_of(OSProfile.objects.order_by("name"), params, _profile)


@router.get("profiles/{name}", response=ProfileOut)
def get_profile(request, name: Path[Text]):
    need(request, Role.VIEWER)
    return answered(OSProfile.objects.filter(name=name).first(), _profile)


@router.post("profiles", response={201: ProfileOut, **WRITES})
def create_profile(request, body: ProfileIn):
    """Checked as the admin checks it: the template rendered for an example machine (400 with its line)."""
    need(request, Role.ADMIN)
    values = body.model_dump(exclude_unset=True)
    return answered(written(editing.create_profile, values, actor(request)), _profile, 201)


@router.patch("profiles/{name}", response={200: ProfileOut, **WRITES})
def update_profile(request, name: Path[Text], body: ProfileChangeIn):
    need(request, Role.ADMIN)
    values = body.model_dump(exclude_unset=True)
    return answered(written(editing.update_profile, name, values, actor(request)), _profile)


@router.delete("profiles/{name}", response={204: None, 409: Problem})
def delete_profile(request, name: Path[Text]):
    """Refused (409) while installs name it (running, or in a machine's history) or a site boots it as memory OS."""
    need(request, Role.ADMIN)
    return answered(written(editing.delete_profile, name, actor(request)) or None, lambda _: None, 204)


# --- the workflow library: deleting a workflow ----------------------------------------------------------------


@router.delete("workflows/{name}", response={204: None, 409: Problem}, tags=["library"])
def delete_workflow(request, name: Path[Annotated[Text, Field(min_length=1, max_length=64)]]):
    """Every version of the workflow. Refused (409) for a stock workflow, and while a profile names it, an
    unfinished install runs it or another workflow includes it. Finished installs keep it frozen in their plans."""
    need(request, Role.ADMIN)
    return answered(written(library.delete_workflow, name, actor(request)) or None, lambda _: None, 204)
