"""Remove secrets from anything headed for the audit log."""

import re

REDACTED = "[redacted]"
# What audit diffs say of a secret that was set; it reveals nothing, so it stays.
CHANGED = "changed"

# Keys whose values are secrets wherever they appear in a details mapping.
SECRET_KEY_PATTERN = re.compile(r"pass(word|wd|phrase)?|secret|token|private_?key|api_?key|credential", re.I)


def redact(value):
    """Return a copy of ``value`` with the values of secret-looking keys replaced."""
    if isinstance(value, dict):
        return {
            k: (REDACTED if SECRET_KEY_PATTERN.search(str(k)) and v not in (None, "", CHANGED) else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value
