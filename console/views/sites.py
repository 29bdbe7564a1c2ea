"""The sites: a picker, and one site's overview, every rack side by side as live elevations (the front, and
the rear as well where a rack holds half-depth machines)."""

from __future__ import annotations

from django.db.models import Count
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from accounts.roles import Role, require_role
from console.racks import GEOMETRY, draw_racks
from inventory.models import Site


@require_GET
@require_role(Role.VIEWER)
def site_list(request):
    sites = Site.objects.annotate(
        rack_count=Count("racks", distinct=True), machine_count=Count("racks__machines", distinct=True)
    ).order_by("slug")
    return render(request, "inventory/site_list.html", {"sites": sites})


@require_GET
@require_role(Role.VIEWER)
def site_overview(request, slug: str):
    site = get_object_or_404(Site, slug=slug)
    drawings = draw_racks(site.racks.select_related("site").order_by("name"))
    context = {"site": site, "drawings": drawings, "g": GEOMETRY}
    if request.GET.get("partial"):
        return render(request, "inventory/_rack_grid.html", context)
    context |= {
        "sites": Site.objects.order_by("slug").only("slug", "name"),
        "machine_count": sum(len(d["boxes"]) for d in drawings),
    }
    return render(request, "inventory/site_overview.html", context)
