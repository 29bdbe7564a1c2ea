from django.contrib import admin

from audit.admin_mixins import AuditedAdminMixin

from .forms import BMCForm, NICInlineFormSet, SiteForm, mac_search_term
from .models import BMC, NIC, Machine, OSProfile, Rack, Site


@admin.register(Site)
class SiteAdmin(AuditedAdminMixin, admin.ModelAdmin):
    form = SiteForm
    list_display = ("slug", "name", "tftp_root", "base_url", "bmc_username")
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


@admin.register(Machine)
class MachineAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("hostname", "rack", "position_u", "status", "protected", "power_state", "vendor", "model", "serial")
    list_filter = ("rack__site", "rack", "status", "protected", "power_state", "vendor")
    list_select_related = ("rack__site",)
    search_fields = ("hostname", "nics__mac", "serial", "bmc__address")
    autocomplete_fields = ("rack",)
    inlines = [NICInline, BMCInline]
    readonly_fields = ("power_state", "power_state_at", "facts")
    fieldsets = (
        (None, {"fields": ("hostname", "status", "protected")}),
        ("Location", {"fields": ("rack", "position_u", "height_u")}),
        ("Hardware", {"fields": ("vendor", "model", "serial", "facts")}),
        ("Power", {"fields": ("power_state", "power_state_at")}),
    )

    def get_search_results(self, request, queryset, search_term):
        # A MAC typed as AA-BB-CC-DD-EE-FF finds the NIC stored as aa:bb:cc:dd:ee:ff.
        return super().get_search_results(request, queryset, mac_search_term(search_term))


@admin.register(OSProfile)
class OSProfileAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("name", "method", "kernel", "target_disk")
    list_filter = ("method",)
    search_fields = ("name", "description")
