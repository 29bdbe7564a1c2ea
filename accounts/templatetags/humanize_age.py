"""{{ when|age }}: "12 s ago", "5 min ago", "3 h ago", "2 d ago" — how stale a cached reading is."""

from django import template
from django.utils import timezone

register = template.Library()


@register.filter
def age(when) -> str:
    if not when:
        return ""
    seconds = max(0, int((timezone.now() - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


@register.filter
def duration(seconds) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
