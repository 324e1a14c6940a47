"""SPF record syntax (RFC 7208 §4.5, §4.6.1, §5, §6, §7): selecting records, parsing terms, macros."""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import dns.exception
import dns.name

MECHANISMS = frozenset({"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"})
_NEEDS_TARGET = frozenset({"include", "exists"})
_MACRO_LETTERS = "slodiphv"  # c, r and t are allowed only in explanation text (§7.2)
_MACRO = re.compile(
    r"%(?:\{(?P<letter>[a-zA-Z])(?P<digits>[0-9]*)(?P<reverse>[rR]?)(?P<delims>[-.+,/_=]*)\}|[%_-])"
)
_TERM = re.compile(r"^(?P<qualifier>[-+~?]?)(?P<name>[a-zA-Z0-9]+)(?P<rest>.*)$", re.DOTALL)
_MODIFIER = re.compile(r"^(?P<name>[a-zA-Z][a-zA-Z0-9_.-]*)=(?P<value>.*)$", re.DOTALL)
_DUAL_CIDR = re.compile(r"(?:/(?P<v4>[0-9]+))?(?://(?P<v6>[0-9]+))?$")
_IP_CIDR = re.compile(r"^(?P<ip>[^/]+)(?:/(?P<cidr>[0-9]+))?$")
_TOPLABEL = re.compile(r"^(?:[a-z0-9]*[a-z][a-z0-9]*|[a-z0-9]+-[a-z0-9-]*[a-z0-9])$", re.IGNORECASE)
_MAX_NAME = 253


class SpfSyntaxError(ValueError):
    """The record is not valid RFC 7208 syntax (a permerror)."""


@dataclass(frozen=True)
class Mechanism:
    """One mechanism: its qualifier, its name, and its domain-spec (None means the current domain)."""

    qualifier: str
    name: str
    target: str | None = None


@dataclass(frozen=True)
class SpfRecord:
    """A parsed SPF record: its mechanisms in order and its redirect modifier."""

    mechanisms: tuple[Mechanism, ...]
    redirect: str | None = None

    @property
    def evaluated(self) -> tuple[Mechanism, ...]:
        """The mechanisms up to and including the first `all`: evaluation never goes past it."""
        for index, mechanism in enumerate(self.mechanisms):
            if mechanism.name == "all":
                return self.mechanisms[: index + 1]
        return self.mechanisms

    @property
    def effective_redirect(self) -> str | None:
        """The redirect target, unless an `all` anywhere in the record makes it ignored (§6.1)."""
        has_all = any(mechanism.name == "all" for mechanism in self.mechanisms)
        return None if has_all else self.redirect


def spf_records(strings_per_record: Sequence[Sequence[bytes]]) -> list[str]:
    """Return the SPF records among TXT records: strings joined without spaces, starting `v=spf1`."""
    joined = [b"".join(strings) for strings in strings_per_record]
    return [
        record.decode("latin-1")
        for record in joined
        if record.lower() == b"v=spf1" or record.lower().startswith(b"v=spf1 ")
    ]


def parse_record(text: str) -> SpfRecord:
    """Parse a whole record (syntax errors anywhere make it invalid, §4.6); raise SpfSyntaxError."""
    terms = [term for term in text.split(" ") if term][1:]  # [0] is the version, checked on selection
    mechanisms: list[Mechanism] = []
    modifiers: dict[str, str] = {}
    for term in terms:
        modifier = _MODIFIER.match(term)
        if modifier is None:
            mechanisms.append(_parse_mechanism(term))
            continue
        name, value = modifier["name"].lower(), modifier["value"]
        if name in ("redirect", "exp"):
            if name in modifiers:
                raise SpfSyntaxError(f"{name}= appears more than once")
            check_domain_spec(value)
            modifiers[name] = value
        else:
            _check_macro_string(value)  # unknown modifiers are ignored, but must parse (§6)
    return SpfRecord(tuple(mechanisms), modifiers.get("redirect"))


def _parse_mechanism(term: str) -> Mechanism:
    match = _TERM.match(term)
    name = match["name"].lower() if match else ""
    if match is None or name not in MECHANISMS:
        raise SpfSyntaxError(f"unknown mechanism {term!r}")
    qualifier, rest = match["qualifier"] or "+", match["rest"]
    if name in ("ip4", "ip6"):
        _check_network(name, rest)
        return Mechanism(qualifier, name)
    if name in ("a", "mx"):
        cidr = _DUAL_CIDR.search(rest)
        assert cidr is not None  # every part of the pattern is optional
        _check_cidr(cidr["v4"], 32)
        _check_cidr(cidr["v6"], 128)
        rest = rest[: cidr.start()]
    if name == "all" or not rest:
        if rest or name in _NEEDS_TARGET:
            raise SpfSyntaxError(f"malformed mechanism {term!r}")
        return Mechanism(qualifier, name)
    if not rest.startswith(":"):
        raise SpfSyntaxError(f"malformed mechanism {term!r}")
    check_domain_spec(rest[1:])
    return Mechanism(qualifier, name, rest[1:])


def _check_network(name: str, rest: str) -> None:
    match = _IP_CIDR.match(rest[1:]) if rest.startswith(":") else None
    try:
        if match is None or "%" in rest:
            raise ValueError(rest)
        address = ipaddress.ip_address(match["ip"])
    except ValueError:
        raise SpfSyntaxError(f"malformed {name}:{rest[1:]}") from None
    if (name == "ip4") != (address.version == 4):
        raise SpfSyntaxError(f"{name} with an IPv{address.version} address")
    _check_cidr(match["cidr"], 32 if name == "ip4" else 128)


def _check_cidr(length: str | None, maximum: int) -> None:
    if length is not None and (int(length) > maximum or (length.startswith("0") and length != "0")):
        raise SpfSyntaxError(f"bad CIDR length /{length}")


def check_domain_spec(spec: str) -> None:
    """Check a domain-spec: a macro-string ending in a macro or in `.toplabel` (§7.1)."""
    _check_macro_string(spec)
    if not spec:
        raise SpfSyntaxError("empty domain-spec")
    macros = list(_MACRO.finditer(spec))
    if macros and macros[-1].end() == len(spec):
        return
    _, dot, label = spec.removesuffix(".").rpartition(".")
    if not dot or not _TOPLABEL.match(label):
        raise SpfSyntaxError(f"domain-spec {spec!r} does not end in a valid top label")
    if not macros:
        to_name(spec)


def _check_macro_string(text: str) -> None:
    position = 0
    while position < len(text):
        char = text[position]
        if char == "%":
            macro = _MACRO.match(text, position)
            letter = macro["letter"] if macro else None
            if macro is None or (letter is not None and letter.lower() not in _MACRO_LETTERS):
                raise SpfSyntaxError(f"bad macro at {text[position:]!r}")
            if macro["digits"] and int(macro["digits"]) == 0:
                raise SpfSyntaxError("a macro digit transformer must be nonzero")
            position = macro.end()
        elif not "\x21" <= char <= "\x7e":
            raise SpfSyntaxError(f"character {char!r} is not allowed")
        else:
            position += 1


def expand(spec: str, values: Mapping[str, str]) -> str | None:
    """Expand macros (§7.3) from values by lowercase letter; None if a needed value is unknown."""
    missing: list[str] = []

    def replace(macro: re.Match[str]) -> str:
        letter = macro["letter"]
        if letter is None:
            return {"%%": "%", "%_": " ", "%-": "%20"}[macro[0]]
        if (value := values.get(letter.lower())) is None:
            missing.append(letter)
            return ""
        parts = re.split("[" + re.escape(macro["delims"] or ".") + "]", value)
        if macro["reverse"]:
            parts.reverse()
        if macro["digits"]:
            parts = parts[-int(macro["digits"]) :]
        text = ".".join(parts)
        return urllib.parse.quote(text, safe="-._~") if letter.isupper() else text

    expanded = _MACRO.sub(replace, spec)
    if missing:
        return None
    while len(expanded.removesuffix(".")) > _MAX_NAME and "." in expanded:
        expanded = expanded.split(".", 1)[1]  # §7.3: truncate from the left to fit
    return expanded


def to_name(domain: str) -> dns.name.Name:
    """Convert a target domain to an absolute DNS name; raise SpfSyntaxError if it is malformed."""
    text = domain.removesuffix(".")
    try:
        if not text:
            raise ValueError("empty name")
        return dns.name.from_text(text)
    except (dns.exception.DNSException, ValueError) as exc:
        raise SpfSyntaxError(f"malformed domain {domain!r}: {exc}") from None
