from django.contrib import admin
from django.db.models import Count

from audit.admin_mixins import AuditedAdminMixin
from audit.service import Actor
from provisioner.pdu import MAX_OUTLETS

from . import tagging
from .forms import BMCForm, NICInlineFormSet, PduForm, PduOutletInlineFormSet, SiteForm, mac_search_term
from .models import BMC, NIC, Machine, OSProfile, Pdu, PduOutlet, Rack, Site, Tag


@admin.register(Site)
class SiteAdmin(AuditedAdminMixin, admin.ModelAdmin):
    form = SiteForm
    list_display = ("slug", "name", "tftp_root", "base_url", "bmc_username", "discovery")
    search_fields = ("slug", "name")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("default_bmc_password_set",)
    fieldsets = (
        (None, {"fields": ("slug", "name", "tftp_root", "base_url", "domain", "dns_servers")}),
        (
            "Default BMC credentials",
            {
                "fields": ("bmc_username", "bmc_password", "clear_bmc_password", "default_bmc_password_set"),
                "description": "Used by every BMC of the site that has no user or password of its own; a BMC's "
                "own credentials win.",
            },
        ),
        (
            "Memory OS, commissioning and discovery of unknown machines",
            {
                "fields": ("memory_os", "create_bmc_user", "discovery", "provisioning_networks"),
                "description": "The memory OS boots commissioning, tests, release and discovery. Discovery on: a "
                "machine whose MAC is not in inventory that network-boots here boots the memory OS, registers its "
                "hardware and waits on the Discovered page; every known MAC boots its disk. Registrations are taken "
                "only from the provisioning networks.",
            },
        ),
    )

    @admin.display(description="default password stored", boolean=True)
    def default_bmc_password_set(self, obj):
        return obj.has_bmc_password if obj and obj.pk else False


@admin.register(Rack)
class RackAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("name", "site", "height_u")
    list_filter = ("site",)
    list_select_related = ("site",)
    search_fields = ("name", "site__slug", "site__name")
    autocomplete_fields = ("site",)


class NICInline(admin.TabularInline):
    model = NIC
    formset = NICInlineFormSet
    extra = 0
    fields = ("mac", "is_pxe", "name", "ip", "prefix_len", "gateway", "vlan")
    # Characters each column shows (a MAC is 17, an IPv4 address 15; a longer IPv6 address scrolls in its box):
    # the admin's 20em text fields made the table wider than a 1280-pixel window.
    input_sizes = {"mac": 17, "name": 8, "ip": 15, "gateway": 15, "prefix_len": 3, "vlan": 4}

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        size = self.input_sizes.get(db_field.name)
        if field is not None and size:
            field.widget.attrs.update(size=size, style=f"width: {size + 2}ch")  # number inputs ignore size
        return field


class BMCInline(admin.StackedInline):
    model = BMC
    form = BMCForm
    extra = 0
    max_num = 1
    can_delete = True
    readonly_fields = ("password_set",)

    @admin.display(description="password stored", boolean=True)
    def password_set(self, obj):
        return obj.has_password if obj and obj.pk else False


class PduOutletInline(admin.TabularInline):
    model = PduOutlet
    formset = PduOutletInlineFormSet
    extra = 0
    max_num = MAX_OUTLETS
    fields = ("pdu", "outlet")
    autocomplete_fields = ("pdu",)
    verbose_name_plural = "PDU outlets (power without a BMC, or when the BMC hangs; one per power supply)"


@admin.register(Pdu)
class PduAdmin(AuditedAdminMixin, admin.ModelAdmin):
    form = PduForm
    list_display = ("name", "site", "address", "port", "profile", "outlet_count", "snmp_version")
    list_filter = ("site", "profile", "snmp_version")
    list_select_related = ("site",)
    search_fields = ("name", "address", "site__slug")
    autocomplete_fields = ("site",)
    readonly_fields = ("secrets_stored",)
    fieldsets = (
        (None, {"fields": ("site", "name", "address", "port", "profile", "outlet_count")}),
        ("SNMP", {"fields": ("snmp_version", "community", "secrets_stored")}),
        (
            "SNMPv3",
            {"fields": ("v3_user", "v3_auth_protocol", "auth_key", "v3_priv_protocol", "priv_key", "v3_context")},
        ),
    )

    @admin.display(description="secrets stored")
    def secrets_stored(self, obj):
        if not obj or not obj.pk:
            return "none yet"
        stored = [
            name
            for name, has in (
                ("community", obj.has_community),
                ("authentication key", obj.has_auth_key),
                ("privacy key", obj.has_priv_key),
            )
            if has
        ]
        return ", ".join(stored) or "none"


@admin.register(Machine)
class MachineAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("hostname", "rack", "position_u", "status", "protected", "power_state", "vendor", "model", "serial")
    list_filter = ("rack__site", "rack", "status", "protected", "power_state", "vendor")
    list_select_related = ("rack__site",)
    search_fields = ("hostname", "nics__mac", "serial", "bmc__address")
    autocomplete_fields = ("rack", "tags")
    inlines = [NICInline, BMCInline, PduOutletInline]
    readonly_fields = ("power_state", "power_state_at", "facts")
    fieldsets = (
        (None, {"fields": ("hostname", "status", "protected", "tags")}),
        ("Location", {"fields": ("rack", "position_u", "height_u", "depth")}),
        ("Hardware", {"fields": ("vendor", "model", "serial", "facts")}),
        ("Power", {"fields": ("power_state", "power_state_at")}),
    )

    def save_related(self, request, form, formsets, change):
        """The tags are saved with the form's many-to-many fields: audited as the pages audit them."""
        machine = form.instance
        before = set(machine.tags.values_list("name", flat=True)) if change else set()
        super().save_related(request, form, formsets, change)
        after = set(machine.tags.values_list("name", flat=True))
        tagging.record_change(Actor.for_user(request.user), machine, after - before, before - after)

    def get_search_results(self, request, queryset, search_term):
        # A MAC typed as AA-BB-CC-DD-EE-FF finds the NIC stored as aa:bb:cc:dd:ee:ff.
        return super().get_search_results(request, queryset, mac_search_term(search_term))


@admin.register(OSProfile)
class OSProfileAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("name", "method", "kernel", "target_disk")
    list_filter = ("method",)
    search_fields = ("name", "description")


@admin.register(Tag)
class TagAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("name", "colour", "description", "machine_count")
    list_filter = ("colour",)
    search_fields = ("name", "description")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(machine_count=Count("machines"))

    @admin.display(description="machines", ordering="machine_count")
    def machine_count(self, obj):
        return obj.machine_count
