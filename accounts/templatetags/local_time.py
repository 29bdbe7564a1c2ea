"""{{ when|when }}: a time as `<time datetime="…Z" data-local="minutes">2026-12-06 14:03 UTC</time>`.

The text is UTC and says so, which is what a page shows without JavaScript; static/js/local-time.js rewrites it
to the browser's time zone with the zone's name ("23:03 GMT+9"). One filter so every page prints times the same
way. Formats: "minutes" (default, Y-m-d H:i), "seconds" (Y-m-d H:i:s), "time" (H:i:s), "short" (m-d H:i).
"""

from datetime import UTC, datetime

from django import template
from django.utils.html import format_html

register = template.Library()

FORMATS = {
    "minutes": "%Y-%m-%d %H:%M",
    "seconds": "%Y-%m-%d %H:%M:%S",
    "time": "%H:%M:%S",
    "short": "%m-%d %H:%M",
}


@register.filter
def when(value, fmt: str = "minutes") -> str:
    if not isinstance(value, datetime):
        return ""
    if fmt not in FORMATS:
        raise template.TemplateSyntaxError(f"when: unknown format {fmt!r}, expected one of {sorted(FORMATS)}")
    utc = value.astimezone(UTC)
    iso = utc.isoformat(timespec="seconds").replace("+00:00", "Z")
    return format_html('<time datetime="{}" data-local="{}">{} UTC</time>', iso, fmt, utc.strftime(FORMATS[fmt]))
