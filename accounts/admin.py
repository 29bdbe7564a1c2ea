from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from audit.admin_mixins import AuditedAdminMixin

from .models import User


@admin.register(User)
class ProvisionerUserAdmin(AuditedAdminMixin, UserAdmin):
    audit_exclude_fields = ("password", "last_login")
