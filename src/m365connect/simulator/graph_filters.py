"""A small, strict OData $filter parser and evaluator for /users, with Graph's errors and limits.

Supported: eq, ne, in, startsWith, endsWith, not, and, or, parentheses, and the lambda
`proxyAddresses/any(x:x eq '...')` (also startsWith/endsWith inside, and otherMails). String literals use
OData escaping ('' for '). Comparisons are case-insensitive, as in the directory. ne, not and endsWith
are advanced queries: they need ConsistencyLevel: eventual and $count=true.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from m365connect.simulator.graph_core import GraphError, property_named

Kind = Literal["string", "bool", "collection"]
Value = str | bool | None
Predicate = Callable[[Mapping[str, Any]], bool]

_STRING_OPS = frozenset({"eq", "ne", "in", "startswith"})
_ADDRESS_OPS = _STRING_OPS | {"endswith"}
# property -> (kind, operators Graph supports on it for users)
FILTERABLE: dict[str, tuple[Kind, frozenset[str]]] = {
    "id": ("string", frozenset({"eq", "in"})),
    "userPrincipalName": ("string", _ADDRESS_OPS),
    "mail": ("string", _ADDRESS_OPS),
    "displayName": ("string", _STRING_OPS),
    "mailNickname": ("string", _STRING_OPS),
    "userType": ("string", frozenset({"eq", "ne", "in"})),
    "accountEnabled": ("bool", frozenset({"eq", "ne"})),
    "proxyAddresses": ("collection", frozenset({"eq", "startswith", "endswith"})),
    "otherMails": ("collection", frozenset({"eq", "startswith", "endswith"})),
}
_ADVANCED_MESSAGES = {
    "ne": "Filter operator 'NotEqualsMatch' is not supported.",
    "not": "Filter operator 'Not' is not supported.",
    "endswith": "Unsupported Query.",
}
_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[(),:/]))")


_PROXY_EQUALS = re.compile(r"^\s*proxyAddresses/any\(\s*(\w+)\s*:\s*\1\s+eq\s+'((?:[^']|'')*)'\s*\)\s*$")


def proxy_address_equality(text: str) -> str | None:
    """The literal of a filter that is exactly `proxyAddresses/any(x:x eq '...')`, else None.

    Only an index hint: the caller still evaluates the parsed filter on the users it narrows to.
    """
    match = _PROXY_EQUALS.match(text)
    return match.group(2).replace("''", "'") if match else None


def invalid_clause() -> GraphError:
    """Graph's answer to a $filter it cannot parse or whose literal has the wrong type."""
    return GraphError(400, "BadRequest", "Invalid filter clause")


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while text[pos:].strip():
        match = _TOKEN.match(text, pos)
        if match is None or match.lastgroup is None:
            raise invalid_clause()
        tokens.append((match.lastgroup, match.group(match.lastgroup)))
        pos = match.end()
    return tokens


def _either(left: Predicate, right: Predicate) -> Predicate:
    return lambda user: left(user) or right(user)


def _both(left: Predicate, right: Predicate) -> Predicate:
    return lambda user: left(user) and right(user)


def _compare(op: str, actual: Any, expected: Value) -> bool:
    """One string/bool comparison; strings compare case-insensitively, a null never starts or ends."""
    if isinstance(actual, str) and isinstance(expected, str):
        actual, expected = actual.lower(), expected.lower()
    if op == "eq":
        return bool(actual == expected)
    if op == "ne":
        return bool(actual != expected)
    if not isinstance(actual, str) or not isinstance(expected, str):
        return False
    return actual.startswith(expected) if op == "startswith" else actual.endswith(expected)


@dataclass
class _Parser:
    tokens: list[tuple[str, str]]
    known: Collection[str]
    advanced: bool
    pos: int = 0

    def parse(self) -> Predicate:
        predicate = self._or()
        if self.pos != len(self.tokens):
            raise invalid_clause()
        return predicate

    def _peek(self, offset: int = 0) -> tuple[str, str]:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else ("end", "")

    def _take(self, kind: str, value: str | None = None) -> str:
        token_kind, token = self._peek()
        if token_kind != kind or (value is not None and token.lower() != value):
            raise invalid_clause()
        self.pos += 1
        return token

    def _keyword(self, word: str) -> bool:
        kind, token = self._peek()
        if kind == "name" and token.lower() == word:
            self.pos += 1
            return True
        return False

    def _or(self) -> Predicate:
        predicate = self._and()
        while self._keyword("or"):
            predicate = _either(predicate, self._and())
        return predicate

    def _and(self) -> Predicate:
        predicate = self._unary()
        while self._keyword("and"):
            predicate = _both(predicate, self._unary())
        return predicate

    def _unary(self) -> Predicate:
        if self._peek()[0] == "name" and self._peek()[1].lower() == "not":
            self.pos += 1
            self._require_advanced("not")
            inner = self._unary()
            return lambda user: not inner(user)
        return self._primary()

    def _primary(self) -> Predicate:
        if self._peek() == ("punct", "("):
            self.pos += 1
            predicate = self._or()
            self._take("punct", ")")
            return predicate
        name = self._take("name")
        if name.lower() in ("startswith", "endswith") and self._peek() == ("punct", "("):
            return self._function(name.lower())
        prop = self._property(name)
        if self._peek() == ("punct", "/"):
            return self._lambda(prop)
        op = self._take("name").lower()
        if op == "in":
            values = self._list()
            self._check(prop, "in", *values)
            return lambda user: any(_compare("eq", user.get(prop), v) for v in values)
        if op not in ("eq", "ne"):
            raise invalid_clause()
        value = self._literal()
        self._check(prop, op, value)
        return lambda user: _compare(op, user.get(prop), value)

    def _function(self, function: str) -> Predicate:
        self._take("punct", "(")
        prop = self._property(self._take("name"))
        self._take("punct", ",")
        value = self._literal()
        self._take("punct", ")")
        self._check(prop, function, value)
        return lambda user: _compare(function, user.get(prop), value)

    def _lambda(self, prop: str) -> Predicate:
        self._take("punct", "/")
        self._take("name", "any")
        self._take("punct", "(")
        variable = self._take("name")
        self._take("punct", ":")
        op, value = self._lambda_body(variable)
        self._take("punct", ")")
        self._check(prop, op, value, element=True)
        return lambda user: any(_compare(op, item, value) for item in user.get(prop) or ())

    def _lambda_body(self, variable: str) -> tuple[str, Value]:
        """`x eq 'v'`, `startsWith(x,'v')` or `endsWith(x,'v')` over the lambda variable."""
        name = self._take("name")
        if name.lower() in ("startswith", "endswith"):
            self._take("punct", "(")
            self._take("name", variable.lower())
            self._take("punct", ",")
            value = self._literal()
            self._take("punct", ")")
            return name.lower(), value
        if name.lower() != variable.lower():
            raise invalid_clause()
        self._take("name", "eq")
        return "eq", self._literal()

    def _list(self) -> list[Value]:
        self._take("punct", "(")
        values = [self._literal()]
        while self._peek() == ("punct", ","):
            self.pos += 1
            values.append(self._literal())
        self._take("punct", ")")
        return values

    def _literal(self) -> Value:
        kind, token = self._peek()
        self.pos += 1
        if kind == "str":
            return token[1:-1].replace("''", "'")
        if kind == "name" and token.lower() in ("true", "false"):
            return token.lower() == "true"
        if kind == "name" and token.lower() == "null":
            return None
        raise invalid_clause()

    def _property(self, name: str) -> str:
        """The canonical name of a filterable property; otherwise Graph's error for the name."""
        canonical = property_named(name, FILTERABLE)
        if canonical is not None:
            return canonical
        known = property_named(name, self.known)
        if known is not None:
            raise _unsupported_property(known)
        message = f"Could not find a property named '{name}' on type 'microsoft.graph.user'."
        raise GraphError(400, "BadRequest", message)

    def _check(self, prop: str, op: str, *values: Value, element: bool = False) -> None:
        """Operator allowed on the property (on its elements inside any()), advanced rules, literal types."""
        kind, operators = FILTERABLE[prop]
        if op not in operators or (kind == "collection") != element:
            raise _unsupported_property(prop)
        if op in _ADVANCED_MESSAGES:
            self._require_advanced(op)
        for value in values:
            if value is None:
                self._require_advanced("null")
            elif isinstance(value, bool) != (kind == "bool"):
                raise invalid_clause()

    def _require_advanced(self, feature: str) -> None:
        if not self.advanced:
            message = _ADVANCED_MESSAGES.get(feature, "Unsupported Query.")
            raise GraphError(400, "Request_UnsupportedQuery", message)


def _unsupported_property(prop: str) -> GraphError:
    message = (
        f"Unsupported or invalid query filter clause specified for property '{prop}' of resource 'User'."
    )
    return GraphError(400, "Request_UnsupportedQuery", message)


def parse_filter(text: str, *, known: Collection[str], advanced: bool) -> Predicate:
    """Parse a users $filter into a predicate over Graph-named user properties, or raise GraphError."""
    return _Parser(_tokenize(text), known, advanced).parse()
