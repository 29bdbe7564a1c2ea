"""The workflow and script library in the admin site.

Every save goes through installs/library.py, as the REST API's and ``manage.py workflow`` do: a document is
checked first (its problems shown on the document field, each with its line), a change is a new version,
and the library writes the audit entry (so these classes do not use AuditedAdminMixin, which would write a
second one). Versions are never edited or deleted: an install's plan names the version it ran.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Max

from accounts.roles import Role, has_role
from audit.service import Actor
from inventory.admin import OSProfileAdmin
from inventory.models import OSProfile

from . import library
from . import workflow as wf
from .models import Script, Workflow

_CODE = {"rows": 30, "cols": 100, "spellcheck": "false", "class": "vLargeTextField", "style": "font-family: monospace"}


class _LibraryAdmin(admin.ModelAdmin):
    """Rows of the library: the admin role may read and add; only a name's latest version opens for a change,
    which saves the next version; nothing is deleted."""

    list_display = ("name", "version", "description", "created_at", "created_by_label")
    search_fields = ("name", "description")
    ordering = ("name", "-version")
    kept = ("name", "version", "created_at", "created_by_label")

    def has_view_permission(self, request, obj=None):
        return has_role(request.user, Role.ADMIN)

    def has_add_permission(self, request):
        return has_role(request.user, Role.ADMIN)

    def has_change_permission(self, request, obj=None):
        return has_role(request.user, Role.ADMIN) and (obj is None or self._is_latest(obj))

    def has_delete_permission(self, request, obj=None):
        return False

    def _is_latest(self, obj) -> bool:
        latest = type(obj).objects.filter(name=obj.name).aggregate(v=Max("version"))["v"]
        return obj.version == latest

    def get_readonly_fields(self, request, obj=None):
        return self.kept if obj is not None else ()

    def _became(self, request, obj, row, new: bool, before: int | None) -> None:
        """Make the admin's own answer (its message, its redirect) about the row the library saved."""
        for field in type(row)._meta.concrete_fields:
            setattr(obj, field.attname, getattr(row, field.attname))
        obj._state.adding = False
        if not new:
            self.message_user(request, f"Nothing changed: {row.name} stays at version {row.version}.", messages.INFO)
        elif before:
            self.message_user(request, f"Saved as version {row.version}; version {before} is kept as it was.")


def _as_sent(text: str) -> str:
    """A textarea's text as the other doors store it: browsers send CRLF line ends."""
    return text.replace("\r\n", "\n")


class WorkflowForm(forms.ModelForm):
    # Not stripped: the version stored is the document as written (a save of the same text is no new version).
    document = forms.CharField(
        widget=forms.Textarea(attrs=_CODE), strip=False, help_text=Workflow.document.field.help_text
    )

    class Meta:
        model = Workflow
        fields = ("document",)

    def clean_document(self):
        text = _as_sent(self.cleaned_data["document"])
        try:
            checked = library.check(text)
        except wf.WorkflowInvalid as exc:
            raise ValidationError(exc.messages) from None
        if wf.is_stock(checked.name):
            raise ValidationError(f"line 1: {checked.name} is the stock workflow's name; choose another")
        if self.instance.pk and checked.name != self.instance.name:
            raise ValidationError(
                f"This is workflow {self.instance.name}; the document names {checked.name}. Add a new workflow for "
                "another name."
            )
        return text


@admin.register(Workflow)
class WorkflowAdmin(_LibraryAdmin):
    form = WorkflowForm
    kept = (*_LibraryAdmin.kept, "description")

    def get_fields(self, request, obj=None):
        return ("document",) if obj is None else (*self.kept, "document")

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and not self._is_latest(obj):
            return (*self.kept, "document")
        return super().get_readonly_fields(request, obj)

    def save_model(self, request, obj, form, change):
        before = obj.version if change else None
        row, new = library.save_workflow(form.cleaned_data["document"], Actor.for_user(request.user))
        self._became(request, obj, row, new, before)


class ScriptForm(forms.ModelForm):
    body = forms.CharField(widget=forms.Textarea(attrs=_CODE), strip=False, help_text=Script.body.field.help_text)

    class Meta:
        model = Script
        fields = ("name", "description", "body", "timeout_s", "safe_to_repeat")

    def clean_body(self):
        return _as_sent(self.cleaned_data["body"])


@admin.register(Script)
class ScriptAdmin(_LibraryAdmin):
    form = ScriptForm
    list_display = ("name", "version", "description", "timeout_s", "safe_to_repeat", "created_at", "created_by_label")

    def get_fields(self, request, obj=None):
        editable = ("description", "body", "timeout_s", "safe_to_repeat")
        return ("name", *editable) if obj is None else (*self.kept, *editable)

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and not self._is_latest(obj):
            return self.get_fields(request, obj)
        return super().get_readonly_fields(request, obj)

    def save_model(self, request, obj, form, change):
        before = obj.version if change else None
        data = form.cleaned_data
        row, new = library.save_script(
            obj.name,
            data["body"],
            Actor.for_user(request.user),
            description=data.get("description", ""),
            timeout_s=data["timeout_s"],
            safe_to_repeat=data["safe_to_repeat"],
        )
        self._became(request, obj, row, new, before)


# --- profiles: the workflow a profile names, chosen from the library ------------------------------------------


class WorkflowChoiceForm(forms.ModelForm):
    """The profile form with the workflow as a choice of the library's names (inventory cannot read them)."""

    class Meta:
        model = OSProfile
        fields = "__all__"  # noqa: DJ007 -- the profile admin's fields, as they are; this form only changes one widget

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        names = sorted(set(Workflow.objects.values_list("name", flat=True)))
        current = self.instance.workflow if self.instance else ""
        stock = sorted(wf.STOCK_FILES)
        choices = [("", "— the stock workflow of the method —")]
        choices += [(name, name) for name in names]
        choices += [(name, f"{name} (stock)") for name in stock]
        if current and current not in names and current not in stock:
            choices.append((current, f"{current} (not in the library)"))
        field = self.fields["workflow"]
        field.widget = forms.Select(choices=choices)
        field.help_text = (
            "What installs of this profile do: the latest version of a workflow of the library (Installs › "
            "Workflows), checked against the profile's method when saved. The stock workflow of the method when "
            "left blank."
        )


# inventory/admin.py registers the profile admin; inventory cannot import installs, so the library's names
# come in here, by registering it again with this form (apps load their admin modules in INSTALLED_APPS order).
admin.site.unregister(OSProfile)


@admin.register(OSProfile)
class WorkflowOSProfileAdmin(OSProfileAdmin):
    form = WorkflowChoiceForm
    list_display = (*OSProfileAdmin.list_display, "workflow_or_stock")

    @admin.display(description="workflow", ordering="workflow")
    def workflow_or_stock(self, obj):
        return obj.workflow or "stock"
