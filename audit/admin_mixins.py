"""Make every Django admin add/change/delete write an audit entry with a field diff."""

from .diff import diff, snapshot
from .service import Actor, record


def _action(obj, verb: str) -> str:
    return f"{obj._meta.app_label}.{obj._meta.model_name}.{verb}"


class AuditedAdminMixin:
    audit_exclude_fields: tuple[str, ...] = ()

    def _snapshot(self, obj):
        return snapshot(obj, exclude=self.audit_exclude_fields)

    def _before(self, obj):
        if obj.pk is None:
            return None
        old = type(obj)._default_manager.filter(pk=obj.pk).first()
        return self._snapshot(old) if old is not None else None

    def save_model(self, request, obj, form, change):
        before = self._before(obj) if change else None
        super().save_model(request, obj, form, change)
        changes = diff(before, self._snapshot(obj))
        if change and not changes:
            return
        record(Actor.for_user(request.user), _action(obj, "change" if change else "add"), obj, {"changes": changes})

    def delete_model(self, request, obj):
        record(Actor.for_user(request.user), _action(obj, "delete"), obj, {"was": diff(None, self._snapshot(obj))})
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        actor = Actor.for_user(request.user)
        for obj in queryset:
            record(actor, _action(obj, "delete"), obj, {"was": diff(None, self._snapshot(obj))})
        super().delete_queryset(request, queryset)

    def save_formset(self, request, form, formset, change):
        """Inline rows (a machine's NICs and BMC) are audited as changes of their own."""
        actor = Actor.for_user(request.user)
        befores = {}
        for inline_form in formset.initial_forms:
            obj = inline_form.instance
            if obj.pk is not None:
                befores[obj.pk] = self._before(obj)
        for obj in getattr(formset, "deleted_forms", []):
            instance = obj.instance
            if instance.pk is not None:
                record(actor, _action(instance, "delete"), instance, {"was": diff(None, self._snapshot(instance))})
        saved = formset.save(commit=False)
        for obj in formset.deleted_objects:
            obj.delete()
        for obj in saved:
            created = obj.pk is None or obj.pk not in befores
            obj.save()
            changes = diff(None if created else befores[obj.pk], self._snapshot(obj))
            if created or changes:
                record(actor, _action(obj, "add" if created else "change"), obj, {"changes": changes})
        formset.save_m2m()
