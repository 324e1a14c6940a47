"""Hostile values for the fuzzing (tests/test_fuzz.py): the shapes that reached a 500 or were saved as they
came (issue 9), as hypothesis strategies, and where to put them in a request.

A generator driven by the OpenAPI document keeps to what the document allows, and hypothesis leaves lone
surrogates out of text unless asked; so these are asked for explicitly, and each shape is also listed once
by name so that every run tries it.
"""

from __future__ import annotations

import copy
import json
import string
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from hypothesis import strategies as st

HOSTILE_EXAMPLES = 15  # per field and shape


def _spiked(spikes: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Ordinary text with these characters somewhere inside."""
    plain = st.text(string.ascii_letters + " .-@", max_size=12)
    return st.builds(lambda head, spike, tail: f"{head}{spike}{tail}", plain, spikes, plain)


def _overflowing(minutes: int, offset: int, *, late: bool) -> str:
    """A date-time `offset` minutes from UTC that lies past 9999-12-31 (late) or before 0001-01-01 in UTC."""
    if late:
        local = datetime(9999, 12, 31, 23, 59) - timedelta(minutes=minutes)
        return f"{local.isoformat()}-{offset // 60:02d}:{offset % 60:02d}"
    local = datetime(1, 1, 1) + timedelta(minutes=minutes)
    return f"{local.isoformat()}+{offset // 60:02d}:{offset % 60:02d}"


TEXT_SHAPES: dict[str, st.SearchStrategy[Any]] = {
    # Not text at all: no UTF-8 for either database, for Microsoft, or for the JSON answer.
    "lone surrogate": st.sampled_from(["\ud800", "\udfff"]) | _spiked(st.characters(categories=["Cs"])),
    # NUL is refused by PostgreSQL's text; the other C0/C1 controls have no place in one-line fields.
    "control character": st.sampled_from(["\x00", "a\x00b", "Jim\tH", "\x7f", "\x9f"])
    | _spiked(st.characters(categories=["Cc"])),
    # Longer than every text column of ours (the longest stored free text, a display name, is 256).
    "too long": st.just("n" * 257)
    | st.integers(min_value=257, max_value=4000).map(lambda length: "n" * length),
}
INTEGER_SHAPES: dict[str, st.SearchStrategy[Any]] = {
    # Ids are 1 to 2**63 - 1 (BIGINT): the drivers raise past that instead of finding nothing.
    "past int64": st.sampled_from([2**63, 2**64, -(2**63) - 1]) | st.integers(min_value=2**63),
    "below 1": st.sampled_from([0, -1]) | st.integers(max_value=0),
}
# `minutes` from the end (or start) of time, and an offset larger than that: the UTC instant overflows.
_OVERFLOWING = st.integers(min_value=0, max_value=1438).flatmap(
    lambda minutes: st.builds(
        _overflowing, st.just(minutes), st.integers(min_value=minutes + 1, max_value=1439), late=st.booleans()
    )
)
DATETIME_SHAPES: dict[str, st.SearchStrategy[Any]] = {
    "overflowing in UTC": st.sampled_from(["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
    | _OVERFLOWING,
    **TEXT_SHAPES,
}


@dataclass(frozen=True)
class Target:
    """One field of a request: a body leaf (by its key path), a path parameter or a query parameter."""

    location: str  # "body", "path_parameters" or "query"
    path: tuple[str | int, ...]
    kind: str  # "text", "integer" or "datetime"

    def __str__(self) -> str:
        return f"{self.location}:{'.'.join(str(part) for part in self.path)}"

    def inject(self, base: dict[str, Any], value: Any) -> dict[str, Any]:
        """The request `base` (path_parameters, query, body) with `value` in this field."""
        request = copy.deepcopy(base)
        container = request[self.location]
        for key in self.path[:-1]:
            container = container[key]
        container[self.path[-1]] = value
        return request


def hostile_shapes(target: Target) -> dict[str, st.SearchStrategy[Any]]:
    """The hostile shapes for a field of this kind, by name."""
    return {"text": TEXT_SHAPES, "integer": INTEGER_SHAPES, "datetime": DATETIME_SHAPES}[target.kind]


def targets(definition: dict[str, Any], body: Any) -> list[Target]:
    """The integer path and query parameters the document lists, and every leaf of the template body."""
    found = [
        Target("path_parameters" if param["in"] == "path" else "query", (param["name"],), "integer")
        for param in definition.get("parameters", [])
        if param.get("in") in ("path", "query") and param.get("schema", {}).get("type") == "integer"
    ]
    return found + list(_leaves(body, ()))


def _leaves(value: Any, path: tuple[str | int, ...]) -> Iterator[Target]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))
    elif isinstance(value, int) and not isinstance(value, bool):
        yield Target("body", path, "integer")
    elif isinstance(value, str):
        yield Target("body", path, "datetime" if str(path[-1]).endswith("_at") else "text")


def saved_anywhere(content: bytes, value: Any) -> bool:
    """Whether a success answer (2xx) carries the hostile value back as stored: a credential, a mailbox,
    or a bulk item that succeeded (a failed item echoes what was submitted without storing it)."""
    try:
        answer = json.loads(content) if content else None
    except ValueError:
        return False
    return _contains(answer, value)


def _contains(answer: Any, value: Any) -> bool:
    if isinstance(answer, dict):
        if answer.get("success") is False:
            return False
        return any(_contains(item, value) for item in answer.values())
    if isinstance(answer, list):
        return any(_contains(item, value) for item in answer)
    return type(answer) is type(value) and answer == value
