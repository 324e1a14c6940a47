"""Address syntax, normalisation and in-request duplicates of a bulk request (no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from m365connect.mailboxes.schemas import BulkAccount

INVALID_EMAIL = "INVALID_EMAIL"
DUPLICATE_EMAIL = "DUPLICATE_EMAIL"


@dataclass(frozen=True)
class PlannedItem:
    """One submitted account after the local checks."""

    email: str  # as submitted, trimmed
    display_name: str | None
    address: str | None  # normalised (lowercase, IDNA domain); None when the item already failed
    domain: str | None
    error: str | None


def normalise(email: str) -> tuple[str, str] | None:
    """(address, ascii domain) in lowercase, or None when the syntax is not a valid address."""
    try:
        checked = validate_email(email, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError:
        return None
    domain = checked.ascii_domain.lower()
    return f"{checked.local_part.lower()}@{domain}", domain


def plan(accounts: Sequence[BulkAccount]) -> list[PlannedItem]:
    """Syntax-check and de-duplicate (case-insensitively; the first occurrence is processed)."""
    seen: set[str] = set()
    items: list[PlannedItem] = []
    for account in accounts:
        email = account.mailbox_email.strip()
        name = account.display_name.strip() if account.display_name and account.display_name.strip() else None
        parsed = normalise(email)
        if parsed is None:
            items.append(PlannedItem(email, name, None, None, INVALID_EMAIL))
        elif parsed[0] in seen:
            items.append(PlannedItem(email, name, None, None, DUPLICATE_EMAIL))
        else:
            seen.add(parsed[0])
            items.append(PlannedItem(email, name, parsed[0], parsed[1], None))
    return items
