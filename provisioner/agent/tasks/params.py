"""Reading task params: a wrong or missing one fails the task with InvalidParams naming the field."""

from __future__ import annotations

from typing import Any

from provisioner.agent.results import TaskFailed


def invalid(field: str, message: str) -> TaskFailed:
    return TaskFailed("InvalidParams", f"{field}: {message}")


def text(params: dict, field: str, *, default: str | None = None) -> str:
    value = params.get(field, default)
    if not isinstance(value, str) or not value:
        raise invalid(field, "a non-empty string is required")
    if any(c in value for c in "\r\n\x00"):
        raise invalid(field, "must be a single line")
    return value


def number(params: dict, field: str, *, default: float | None = None, minimum: float = 0) -> float:
    value = params.get(field, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise invalid(field, f"a number >= {minimum} is required")
    return value


def text_list(params: dict, field: str, *, default: list | None = None, allow_empty: bool = False) -> list[str]:
    value: Any = params.get(field, default)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise invalid(field, "a list of non-empty strings is required")
    if not value and not allow_empty:
        raise invalid(field, "must not be empty")
    # A newline would smuggle a second entry into a line-based file (authorized_keys, hosts).
    if any(c in v for v in value for c in "\r\n\x00"):
        raise invalid(field, "each entry must be a single line")
    return value
