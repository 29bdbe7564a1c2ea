"""An audit entry's details as people read them: one key per line, nested values as compact JSON."""

import json

from django import template

register = template.Library()


@register.filter
def detail_items(details) -> list[tuple[str, str]]:
    if not isinstance(details, dict):
        return [("", json.dumps(details, ensure_ascii=False, default=str))] if details else []
    return [
        (str(key), value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str))
        for key, value in details.items()
    ]
