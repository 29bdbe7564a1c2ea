"""{{ when|when }}: a time as `<time datetime="…Z" data-local="minutes">2026-12-06 14:03 UTC</time>`.

The text is UTC and says so, which is what a page shows without JavaScript; static/js/local-time.js rewrites it
to the browser's time zone with the zone's name ("23:03 GMT+9"). One filter so every page prints times the same
way. Formats: "minutes" (default, Y-m-d H:i), "seconds" (Y-m-d H:i:s), "time" (H:i:s), "short" (m-d H:i).

Tooltips follow the same rule. A title that holds a time prints it with `{{ at|when_text }}` and the element carries
`{{ at|title_at }}`, from which the script finds that text in the title and puts the local time in its place;
`{{ at|ago }}` is "5 min ago" with the exact time in such a tooltip.
"""

from datetime import UTC, datetime

from django import template
from django.utils.html import format_html

from accounts.templatetags.humanize_age import age

register = template.Library()

FORMATS = {
    "minutes": "%Y-%m-%d %H:%M",
    "seconds": "%Y-%m-%d %H:%M:%S",
    "time": "%H:%M:%S",
    "short": "%m-%d %H:%M",
}


def _utc(value: datetime, fmt: str, name: str) -> tuple[str, str]:
    """The instant as ISO 8601 with a Z, and its UTC text in the format ("2026-12-06 14:03 UTC")."""
    if fmt not in FORMATS:
        raise template.TemplateSyntaxError(f"{name}: unknown format {fmt!r}, expected one of {sorted(FORMATS)}")
    utc = value.astimezone(UTC)
    return utc.isoformat(timespec="seconds").replace("+00:00", "Z"), utc.strftime(FORMATS[fmt]) + " UTC"


@register.filter
def when(value, fmt: str = "minutes") -> str:
    if not isinstance(value, datetime):
        return ""
    iso, text = _utc(value, fmt, "when")
    return format_html('<time datetime="{}" data-local="{}">{}</time>', iso, fmt, text)


@register.filter
def when_text(value, fmt: str = "minutes") -> str:
    """The UTC text alone, for an attribute; the element that holds it carries `title_at` with the same format."""
    if not isinstance(value, datetime):
        return ""
    return _utc(value, fmt, "when_text")[1]


@register.filter
def title_at(value, fmt: str = "minutes") -> str:
    """The attributes that let local-time.js rewrite `when_text` in this element's title to the browser's zone."""
    if not isinstance(value, datetime):
        return ""
    iso, _ = _utc(value, fmt, "title_at")
    return format_html('data-title-at="{}" data-title-local="{}"', iso, fmt)


@register.filter
def ago(value, fmt: str = "seconds") -> str:
    """How long ago, with the exact time (in the browser's zone once the script ran) as its tooltip."""
    if not isinstance(value, datetime):
        return ""
    iso, text = _utc(value, fmt, "ago")
    return format_html(
        '<time datetime="{}" data-title-at="{}" data-title-local="{}" title="{}">{}</time>',
        iso,
        iso,
        fmt,
        text,
        age(value),
    )
