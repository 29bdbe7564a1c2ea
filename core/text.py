"""Small helpers for sentences people read."""

from __future__ import annotations


def a(word: str, *, capital: bool = False) -> str:
    """``word`` with its indefinite article, by how it is written: "an image", "a preseed"."""
    article = "an" if word[:1].lower() in "aeiou" else "a"
    return f"{article.capitalize() if capital else article} {word}"
