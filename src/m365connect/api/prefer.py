"""The `Prefer` request header (RFC 7240): whether the client asked for `respond-async`."""

from __future__ import annotations

from collections.abc import Iterable

RESPOND_ASYNC = "respond-async"


def prefers_respond_async(values: Iterable[str]) -> bool:
    """Whether any `Prefer` field value names `respond-async` (RFC 7240 2: comma-separated preferences,
    each `token [= value] *(; parameter)`; the token is case-insensitive; header fields may repeat)."""
    for value in values:
        for preference in _split_outside_quotes(value, ","):
            token = preference.split(";", 1)[0].split("=", 1)[0].strip()
            if token.lower() == RESPOND_ASYNC:
                return True
    return False


def _split_outside_quotes(value: str, separator: str) -> list[str]:
    """`value` split at `separator`s that are not inside a quoted string (a value may quote a comma)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts
