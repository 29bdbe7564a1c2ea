from django.contrib import admin, messages

from audit.admin_mixins import AuditedAdminMixin
from audit.service import Actor

from .delivery import replay
from .forms import EndpointForm
from .models import Delivery, Endpoint


@admin.register(Endpoint)
class EndpointAdmin(AuditedAdminMixin, admin.ModelAdmin):
    form = EndpointForm
    list_display = ("name", "url", "event_list", "active")
    list_filter = ("active",)
    search_fields = ("name", "url")
    readonly_fields = ("secret_set",)
    fields = ("name", "url", "events", "secret", "secret_set", "active")

    @admin.display(description="events")
    def event_list(self, obj):
        return ", ".join(obj.events)

    @admin.display(description="secret stored", boolean=True)
    def secret_set(self, obj):
        return obj.has_secret if obj and obj.pk else False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    """Deliveries are written by events and jobs only; the admin reads them and replays them."""

    list_display = ("id", "endpoint", "event", "state", "attempts", "last_status", "next_attempt_at", "created_at")
    list_filter = ("state", "event", "endpoint")
    list_select_related = ("endpoint",)
    search_fields = ("=id",)
    actions = ("replay_deliveries",)
    readonly_fields = [f.name for f in Delivery._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Replay: send the selected deliveries' events again, as new deliveries")
    def replay_deliveries(self, request, queryset):
        actor = Actor.for_user(request.user)
        copies = [replay(pk, actor).pk for pk in queryset.values_list("pk", flat=True)]
        self.message_user(request, f"Queued {len(copies)} replay(s): {', '.join(map(str, copies))}.", messages.SUCCESS)
