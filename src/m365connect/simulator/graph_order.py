"""$orderby on /users, with the directory's documented restrictions.

Sources (docs/simulator.md): the user resource marks `displayName` and `userPrincipalName` as supporting
`$orderby`; "Advanced query capabilities on directory objects" lists `$filter` and `$orderby` in the same
query among the scenarios that need the advanced query parameters (`ConsistencyLevel: eventual` and
`$count=true`); without them the directory answers 400 `Request_UnsupportedQuery`, "Sorting not supported
for current query." (the message Microsoft's advanced-queries announcement shows).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import partial

from m365connect.simulator.directory import DirectoryUser
from m365connect.simulator.graph_core import GraphError, property_named

SORTABLE = ("displayName", "userPrincipalName")
_UNSUPPORTED = "Sorting not supported for current query."


@dataclass(frozen=True)
class SortKey:
    """One `$orderby` item: a sortable property and its direction."""

    name: str
    descending: bool


def _syntax_error(value: str, position: int) -> GraphError:
    return GraphError(400, "BadRequest", f"Syntax error at position {position} in '{value}'.")


def _parse_item(value: str, item: str, position: int, known: Collection[str]) -> SortKey:
    words = item.split()
    if not words or len(words) > 2:
        raise _syntax_error(value, position + len(item))
    if len(words) == 2 and words[1].lower() not in ("asc", "desc"):
        raise _syntax_error(value, position + item.index(words[1]) + len(words[1]))
    name = property_named(words[0], known)
    if name is None:
        message = f"Could not find a property named '{words[0]}' on type 'microsoft.graph.user'."
        raise GraphError(400, "BadRequest", message)
    if name not in SORTABLE:
        raise GraphError(400, "Request_UnsupportedQuery", _UNSUPPORTED)
    return SortKey(name, len(words) == 2 and words[1].lower() == "desc")


def parse_orderby(
    value: str | None, *, known: Collection[str], filtered: bool, advanced: bool
) -> list[SortKey]:
    """The sort keys of `$orderby` (empty without it); raise GraphError as the directory does."""
    if value is None:
        return []
    keys, position = [], 0
    for item in value.split(","):
        keys.append(_parse_item(value, item, position, known))
        position += len(item) + 1
    if filtered and not advanced:
        raise GraphError(400, "Request_UnsupportedQuery", _UNSUPPORTED)
    return keys


def _value(user: DirectoryUser, name: str) -> str:
    # Directory string comparisons ignore case ($filter eq does too), so the sort does as well.
    return (user.display_name if name == "displayName" else user.user_principal_name).casefold()


def sort_users(users: Sequence[DirectoryUser], keys: Sequence[SortKey]) -> list[DirectoryUser]:
    """The users in `$orderby` order; ties keep the directory's order, so that paging stays stable."""
    ordered = list(users)
    for key in reversed(keys):  # stable sorts applied last key first give the lexicographic order
        ordered.sort(key=partial(_value, name=key.name), reverse=key.descending)
    return ordered
