"""Address syntax, normalisation and in-request duplicates of a bulk request (no I/O)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import email_validator
from email_validator import EmailNotValidError, validate_email

from m365connect.codes import ErrorCode
from m365connect.mailboxes.schemas import BulkAccount

# The common case, which email-validator accepts unchanged: an ASCII dot-atom local part (its
# rfc_constants.DOT_ATOM_TEXT) and an ASCII host name of at least two labels whose last one ends with a
# letter. Anything else (quotes, display names, Unicode, domain literals, "--" in the domain, which may
# be Punycode) goes to email-validator, so this only ever accepts, and never changes a verdict
# (tests/test_perf_addresses.py compares both on a corpus and on generated strings).
_ATEXT = r"[a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~]"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
_TOP_LABEL = r"(?:[a-zA-Z0-9][a-zA-Z0-9-]{0,61})?[a-zA-Z]"
_COMMON_ADDRESS = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*@((?:{_LABEL}\.)+{_TOP_LABEL})")
_MAX_LENGTH = 254  # email-validator's EMAIL_MAX_LENGTH (RFC 5321 path limit less the brackets)


@dataclass(frozen=True)
class PlannedItem:
    """One submitted account after the local checks."""

    email: str  # as submitted, trimmed
    display_name: str | None
    address: str | None  # normalised (lowercase, IDNA domain); None when the item already failed
    domain: str | None
    error: ErrorCode | None


def normalise(email: str) -> tuple[str, str] | None:
    """(address, ascii domain) in lowercase, or None when the syntax is not a valid address."""
    common = _COMMON_ADDRESS.fullmatch(email) if len(email) <= _MAX_LENGTH else None
    if common is not None and "--" not in common[1]:
        domain = common[1].lower()
        if not _special_use(domain):
            return email.lower(), domain
    # email-validator: ~25 us per address; the fast path above: ~2 us (docs/performance.md)
    return normalise_with_validator(email)


def normalise_with_validator(email: str) -> tuple[str, str] | None:
    """`normalise` without the fast path: email-validator decides (the reference the fast path must match)."""
    try:
        checked = validate_email(email, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError:
        return None
    domain = checked.ascii_domain.lower()
    return f"{checked.local_part.lower()}@{domain}", domain


def _special_use(domain: str) -> bool:
    """A name that email-validator refuses as special-use (read from it, so that both always agree)."""
    return any(
        domain == name or domain.endswith("." + name) for name in email_validator.SPECIAL_USE_DOMAIN_NAMES
    )


def plan(accounts: Sequence[BulkAccount]) -> list[PlannedItem]:
    """Syntax-check and de-duplicate (case-insensitively; the first occurrence is processed)."""
    return list(planned(accounts))


def planned(accounts: Iterable[BulkAccount]) -> Iterator[PlannedItem]:
    """`plan`, one item at a time (a bulk job's 202 plans 100,000 items without holding them all)."""
    seen: set[str] = set()
    for account in accounts:
        email = account.mailbox_email.strip()
        name = account.display_name.strip() if account.display_name and account.display_name.strip() else None
        parsed = normalise(email)
        if parsed is None:
            yield PlannedItem(email, name, None, None, ErrorCode.INVALID_EMAIL)
        elif parsed[0] in seen:
            yield PlannedItem(email, name, None, None, ErrorCode.DUPLICATE_EMAIL)
        else:
            seen.add(parsed[0])
            yield PlannedItem(email, name, parsed[0], parsed[1], None)


def with_duplicates(items: Sequence[PlannedItem], duplicates: Sequence[bool]) -> list[PlannedItem]:
    """`items` with those flagged answering DUPLICATE_EMAIL: a bulk job plans its whole input once and
    then each chunk alone, so an address seen in an earlier chunk is flagged (API.md 3's rule)."""
    return [
        PlannedItem(item.email, item.display_name, None, None, ErrorCode.DUPLICATE_EMAIL)
        if duplicate and item.error is None
        else item
        for item, duplicate in zip(items, duplicates, strict=True)
    ]
