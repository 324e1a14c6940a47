"""DMARC record syntax (RFC 7489 §6.3, §6.4): which TXT records are DMARC records, and which are valid."""

# What "valid" means here is written out, with its reasons, in docs/deliverability.md ("dmarc_correct").
# In short: the ABNF of §6.4 for every tag it defines, tags in any order after `v` (§6.3 asks for `v` first
# and `p` after it; receivers do not enforce the ABNF's order), unknown tags ignored (§6.3), §6.6.3 step 6
# for a missing or bad `p`/`sp`. A bad value of another tag makes the record invalid, although §6.3 lets
# receivers drop it for the default (a SHOULD): the flag asks for a valid record, and says what to fix.

from __future__ import annotations

import re
from dataclasses import dataclass

# Every pattern ends in \Z, not $: "$" also matches before a final line feed, which no DMARC value may have.
# §6.4 dmarc-version: "v" *WSP "=" *WSP %x44 %x4d %x41 %x52 %x43 %x31; the tag name is case-insensitive
# (an ABNF quoted string), "DMARC1" is not (%x values). §6.6.3 steps 2 and 4 keep only records starting so.
_VERSION = re.compile(r"^[vV][ \t]*=[ \t]*DMARC1[ \t]*(?:;|\Z)")
_VERSION_VALUE = "DMARC1"
_TAG_NAME = re.compile(r"^[a-z][a-z0-9_]*\Z")  # the tag-name of RFC 6376 §3.2, which §6.3 borrows
_POLICIES = frozenset({"none", "quarantine", "reject"})
_ALIGNMENT = frozenset({"r", "s"})
_FAILURE_OPTION = re.compile(r"^[01ds](?:[ \t]*:[ \t]*[01ds])*\Z")
_KEYWORD = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"  # RFC 5321 Ldh-str, the Keyword §6.4 uses for rf
_REPORT_FORMATS = re.compile(rf"^{_KEYWORD}(?:[ \t]*:[ \t]*{_KEYWORD})*\Z")
_DIGITS = re.compile(r"^[0-9]+\Z")
_MAX_INTERVAL = 2**32 - 1  # §6.3 ri: a 32-bit unsigned integer
# §6.4 dmarc-uri = URI [ "!" 1*DIGIT [ "k" / "m" / "g" / "t" ] ] with URI from RFC 3986 §3 (an absolute URI:
# a scheme, then characters of the URI alphabet). A "," inside a URI must be %-encoded (§6.2), so it splits.
_URI = re.compile(
    r"^[a-z][a-z0-9+.-]*:(?:[a-z0-9\-._~:/?#\[\]@$&'()*+=!]|%[0-9a-f]{2})+?(?:![0-9]+[kmgt]?)?\Z",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class DmarcRecord:
    """A DMARC record judged: its reason ("ok" or why not) and the policy it asks for, if any."""

    reason: str  # "ok", "invalid_syntax" or "no_policy"
    policy: str | None = None  # the p= in force after §6.6.3 step 6 ("none" for a rua-only record)


def is_dmarc_record(text: str) -> bool:
    """Whether a TXT record is a DMARC record at all (§6.6.3 steps 2 and 4: starts with v=DMARC1)."""
    return _VERSION.match(text) is not None


def parse_tags(text: str) -> dict[str, str] | None:
    """The record's tags by lowercase name; None for a malformed tag-spec or a tag given twice."""
    tags: dict[str, str] = {}
    for spec in text.split(";"):
        if not spec.strip(" \t"):
            continue  # §6.4 allows a trailing separator; empty specs between separators are as harmless
        name, equals, value = spec.partition("=")
        name = name.strip(" \t").lower()
        if not equals or not _TAG_NAME.match(name) or name in tags:
            return None
        tags[name] = value.strip(" \t")
    return tags


def judge_record(text: str, *, subdomain: bool = False) -> DmarcRecord:
    """Judge one DMARC record; `subdomain` when it was found at the organizational domain for a subdomain.

    For a subdomain the policy in force is `sp=` when present, else `p=` (§6.3 "sp").
    """
    tags = parse_tags(text)
    if tags is None or tags.get("v") != _VERSION_VALUE or next(iter(tags)) != "v":
        return DmarcRecord("invalid_syntax")
    if not all(_VALIDATORS[name](value) for name, value in tags.items() if name in _VALIDATORS):
        return DmarcRecord("invalid_syntax")
    policy = tags.get("p", "").lower()
    sub_policy = tags.get("sp", "").lower()
    if policy not in _POLICIES or ("sp" in tags and sub_policy not in _POLICIES):
        # §6.6.3 step 6: a bad or missing p (or a bad sp) with a usable rua (checked above) is p=none.
        return DmarcRecord("ok", "none") if "rua" in tags else DmarcRecord("no_policy")
    return DmarcRecord("ok", sub_policy if subdomain and sub_policy else policy)


def has_valid_uri(value: str) -> bool:
    """§6.4 dmarc-auri / dmarc-furi, read as §6.6.3 step 6.1 does: at least one syntactically valid URI.

    Receivers send reports to the URIs they can use and skip the others (§6.2), so one bad URI in the
    list does not void the record.
    """
    return any(_URI.match(uri.strip(" \t")) for uri in value.split(","))


def _is_percent(value: str) -> bool:
    return _DIGITS.match(value) is not None and len(value) <= 3 and int(value) <= 100  # §6.4 1*3DIGIT, §6.3


def _is_interval(value: str) -> bool:
    return _DIGITS.match(value) is not None and int(value) <= _MAX_INTERVAL


# The tags §6.4 defines and their value syntax. p and sp are judged by §6.6.3 step 6 instead (a bad p
# is not fatal when rua is usable).
_VALIDATORS = {
    "rua": has_valid_uri,
    "ruf": has_valid_uri,
    "adkim": lambda value: value.lower() in _ALIGNMENT,
    "aspf": lambda value: value.lower() in _ALIGNMENT,
    "fo": lambda value: _FAILURE_OPTION.match(value.lower()) is not None,
    "rf": lambda value: _REPORT_FORMATS.match(value.lower()) is not None,
    "ri": _is_interval,
    "pct": _is_percent,
}
