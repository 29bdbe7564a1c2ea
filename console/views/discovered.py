"""The Discovered pages: machines that network-booted at a site that discovers and registered their hardware, and
what a technician does with them (accept into a rack position, discard, ask for the facts again, forget a
discarded one). The writes are installs/discovery.py's, audited there."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_POST

from accounts.roles import Role, has_role, require_role
from audit.service import Actor
from core.edge import BIGINT_MAX, int_param
from installs import discovery
from installs.discovery_facts import summary
from inventory.models import MAX_RACK_U, DiscoveredMachine, DiscoveryState, Rack, Site

PER_PAGE = 50
STATES = ("waiting", "accepted", "discarded", "all")


class AcceptForm(forms.Form):
    """Where the machine goes in inventory; the rest comes from its facts."""

    hostname = forms.CharField(max_length=253, help_text="Lower case, e.g. web-17 or web-17.dc1.example.net.")
    rack = forms.ModelChoiceField(queryset=Rack.objects.none(), empty_label="choose the rack…")
    position_u = forms.IntegerField(label="Position (lowest U)", min_value=1, max_value=MAX_RACK_U)
    height_u = forms.IntegerField(label="Height (U)", min_value=1, max_value=MAX_RACK_U, initial=1)

    def __init__(self, *args, site: Site, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["rack"].queryset = Rack.objects.filter(site=site).select_related("site").order_by("name")

    def add_validation_error(self, exc: ValidationError) -> None:
        """The accept's errors (the admin's validation of the machine and its NICs) on the fields they name."""
        if hasattr(exc, "error_dict"):
            for field, errors in exc.message_dict.items():
                self.add_error(field if field in self.fields else NON_FIELD_ERRORS, errors)
        else:
            self.add_error(NON_FIELD_ERRORS, exc.messages)


def _entry_or_404(pk: int) -> DiscoveredMachine:
    entries = DiscoveredMachine.objects.select_related("site", "machine")
    entry = entries.filter(pk=pk).first() if pk <= BIGINT_MAX else None
    if entry is None:
        raise Http404(f"No discovered machine {pk}.")
    return entry


@require_GET
@require_role(Role.VIEWER)
def discovered_list(request):
    sites = list(Site.objects.order_by("slug"))
    site = request.GET.get("site", "")
    state = request.GET.get("state", "waiting")
    state = state if state in STATES else "waiting"
    entries = DiscoveredMachine.objects.select_related("site", "machine").order_by("-last_seen_at", "-pk")
    if site:
        entries = entries.filter(site__slug=site)
    if state != "all":
        entries = entries.filter(state=state)
    page = Paginator(entries, PER_PAGE).get_page(int_param(request.GET.get("page")) or 1)
    query = urlencode({k: v for k, v in (("site", site), ("state", state)) if v})
    context = {
        "page": page,
        "rows": [(entry, summary(entry.facts)) for entry in page.object_list],
        "sites": sites,
        "site": site,
        "state": state,
        "states": STATES,
        "querystring": query,
        "discovering": [s for s in sites if s.discovery],
        "can_act": has_role(request.user, Role.TECHNICIAN),
    }
    if request.GET.get("partial") == "rows":
        return render(request, "inventory/_discovered_rows.html", context)
    return render(request, "inventory/discovered_list.html", context)


def _detail(request, entry: DiscoveredMachine, form: AcceptForm | None = None, status: int = 200):
    can_act = has_role(request.user, Role.TECHNICIAN)
    if form is None and can_act and entry.state == DiscoveryState.WAITING:
        form = AcceptForm(site=entry.site)
    return render(
        request,
        "inventory/discovered_detail.html",
        {"entry": entry, "facts": summary(entry.facts), "form": form, "can_act": can_act},
        status=status,
    )


@require_GET
@require_role(Role.VIEWER)
def discovered_detail(request, pk: int):
    return _detail(request, _entry_or_404(pk))


@require_POST
@require_role(Role.TECHNICIAN)
def discovered_accept(request, pk: int):
    """The accept form: the machine in inventory, or the form again with what is wrong on each field (400)."""
    entry = _entry_or_404(pk)
    form = AcceptForm(request.POST, site=entry.site)
    if form.is_valid():
        data = form.cleaned_data
        placement = discovery.Placement(data["hostname"], data["rack"], data["position_u"], data["height_u"])
        try:
            machine = discovery.accept(entry.pk, placement, Actor.for_user(request.user))
        except ValidationError as exc:
            form.add_validation_error(exc)
        except discovery.DiscoveryRefused as exc:
            messages.error(request, str(exc))
            return redirect("inventory:discovered-detail", pk=entry.pk)
        else:
            messages.success(
                request,
                f"{machine.hostname} is in inventory (status new) at {machine.rack} U{machine.position_u}; its agent "
                "is told to power it off. Commission it to record its hardware.",
            )
            return redirect("inventory:machine-detail", hostname=machine.hostname)
    return _detail(request, entry, form, status=400)


def _act(request, pk: int, action, done: str, where: str = "inventory:discovered-detail"):
    entry = _entry_or_404(pk)
    try:
        action(entry.pk, Actor.for_user(request.user))
    except discovery.DiscoveryRefused as exc:
        messages.error(request, str(exc))
        return redirect("inventory:discovered-detail", pk=entry.pk)
    messages.success(request, done.format(mac=entry.mac))
    return redirect(reverse(where) if where.endswith("list") else reverse(where, args=[entry.pk]))


@require_POST
@require_role(Role.TECHNICIAN)
def discovered_discard(request, pk: int):
    return _act(
        request,
        pk,
        discovery.discard,
        "{mac} is discarded: its agent is told to power it off, and it is refused if it registers again.",
        "inventory:discovered-list",
    )


@require_POST
@require_role(Role.TECHNICIAN)
def discovered_inventory(request, pk: int):
    return _act(request, pk, discovery.request_inventory, "{mac}'s agent will report its facts again at its next poll.")


@require_POST
@require_role(Role.TECHNICIAN)
def discovered_forget(request, pk: int):
    return _act(
        request,
        pk,
        discovery.forget,
        "{mac} is forgotten: it is discovered afresh when it next registers.",
        "inventory:discovered-list",
    )
