from django.contrib.auth.decorators import login_required
from django.db import connection
from django.db.models import Count
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from inventory.models import Machine, Site


@login_required
def home(request):
    sites = Site.objects.annotate(racks_count=Count("racks", distinct=True)).order_by("slug")
    status_counts = dict(Machine.objects.values_list("status").annotate(n=Count("id")).order_by())
    return render(
        request,
        "home.html",
        {"sites": sites, "status_counts": status_counts, "machine_count": sum(status_counts.values())},
    )


@require_GET
def healthz(request):
    """Liveness for load balancers and `make run`: the process answers and the database does."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"ok": True})
