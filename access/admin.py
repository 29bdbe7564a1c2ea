from django.contrib import admin

from audit.admin_mixins import AuditedAdminMixin

from . import keys
from .forms import JumpHostForm, SiteLoginForm
from .models import HostKeySource, JumpHost, MachineHostKey, SessionPolicy, SiteCA, SiteLogin


@admin.register(JumpHost)
class JumpHostAdmin(AuditedAdminMixin, admin.ModelAdmin):
    form = JumpHostForm
    list_display = ("site", "order", "address", "port", "username", "key_stored", "pinned_fingerprints")
    list_filter = ("site",)
    list_select_related = ("site",)
    search_fields = ("address", "site__slug", "site__name")
    autocomplete_fields = ("site",)
    readonly_fields = ("key_stored", "pinned_fingerprints")

    @admin.display(description="private key stored", boolean=True)
    def key_stored(self, obj):
        return obj.has_private_key if obj and obj.pk else False

    @admin.display(description="pinned host key")
    def pinned_fingerprints(self, obj):
        if not obj or not obj.host_key:
            return "—"
        try:
            return keys.describe(obj.pinned_keys())
        except keys.BadKey as exc:
            return str(exc)


@admin.register(SiteLogin)
class SiteLoginAdmin(AuditedAdminMixin, admin.ModelAdmin):
    form = SiteLoginForm
    list_display = ("site", "username", "port", "key_stored")
    list_select_related = ("site",)
    autocomplete_fields = ("site",)
    readonly_fields = ("key_stored", "public_key")

    @admin.display(description="private key stored", boolean=True)
    def key_stored(self, obj):
        return obj.has_private_key if obj and obj.pk else False


@admin.register(MachineHostKey)
class MachineHostKeyAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("machine", "fingerprints", "source", "pinned_at")
    list_filter = ("source",)
    list_select_related = ("machine",)
    search_fields = ("machine__hostname",)
    autocomplete_fields = ("machine",)
    readonly_fields = ("fingerprints", "source", "pinned_at")

    def save_model(self, request, obj, form, change):
        # A key a person typed is theirs to answer for, whatever pinned the one it replaces.
        obj.source = HostKeySource.OPERATOR
        super().save_model(request, obj, form, change)


@admin.register(SessionPolicy)
class SessionPolicyAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("site", "min_role", "technician_principals", "admin_principals", "idle_timeout_s", "max_length_s",
                    "record_input", "reason_required_protected")  # fmt: skip
    list_select_related = ("site",)
    autocomplete_fields = ("site",)


@admin.register(SiteCA)
class SiteCAAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """The public keys only. The CA is made on first use and rotated with `manage.py ssh_ca SITE --rotate`,
    so nobody types or pastes its private key."""

    list_display = ("site", "fingerprint", "rotated_at")
    list_select_related = ("site",)
    fields = ("site", "public_key", "previous_public_key", "fingerprint", "created_at", "rotated_at")
    readonly_fields = fields

    @admin.display(description="fingerprint")
    def fingerprint(self, obj):
        try:
            return keys.describe(keys.parse_host_keys(obj.public_key)) if obj and obj.public_key else "—"
        except keys.BadKey as exc:
            return str(exc)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        # Deleting it would make every machine of the site refuse the next session's certificate.
        return False
