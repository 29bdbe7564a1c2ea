"""Field-by-field snapshots and diffs of model instances for audit details."""

import datetime
import decimal
import uuid

from .redact import CHANGED


def _plain(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, dict)):
        return value
    if isinstance(value, (datetime.date, datetime.time, decimal.Decimal, uuid.UUID)):
        return str(value)
    return str(value)


def secret_fields(model) -> dict[str, str]:
    """{column attribute: public name} of fields whose values never enter the audit log."""
    return dict(getattr(model, "audit_secret_fields", {}))


def snapshot(obj, exclude=()) -> dict:
    """Plain values of the concrete fields of ``obj``; secret fields appear under their public
    name with an opaque value that only tells whether they changed."""
    secrets = secret_fields(type(obj))
    data = {}
    for field in obj._meta.concrete_fields:
        if field.primary_key or field.name in exclude:
            continue
        value = field.value_from_object(obj)
        if field.attname in secrets or field.name in secrets:
            data[secrets.get(field.attname, secrets.get(field.name))] = ("secret", hash(value))
            continue
        if field.is_relation and value is not None:
            related = getattr(obj, field.name, None)
            value = str(related) if related is not None else value
        data[field.name] = _plain(value)
    return data


def diff(before: dict | None, after: dict) -> dict:
    """{field: [old, new]}, or {field: "changed"} for secrets. ``before`` None means created."""
    changes = {}
    for name, new in after.items():
        old = None if before is None else before.get(name)
        if before is not None and old == new:
            continue
        if isinstance(new, tuple) and new and new[0] == "secret":
            if before is None and new[1] == hash(""):
                continue
            changes[name] = CHANGED
            continue
        if before is None and new in (None, "", [], {}):
            continue
        changes[name] = [old, new] if before is not None else new
    return changes
