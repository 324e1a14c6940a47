"""Verify addresses against a tenant: who owns each one, and can the app use that mailbox?

Step 1, lookup: one `$batch` item per address, `GET /users?$filter=proxyAddresses/any(...)`, since an
alias does not resolve through `/users/{upn}` (reference §4.1-4.2). Step 2, probe (when the token has
MailboxSettings.Read/ReadWrite): a second wave, one `GET /users/{id}/mailboxSettings` per user that
passed step 1, so that its batches are full too. The first rule that applies decides:

    1. lookup answer not 2xx          -> the code table (error_codes.py)
    2. no user, or more than one      -> MAILBOX_NOT_FOUND
    3. Guest, no proxyAddresses, or no mail -> NO_EXCHANGE_MAILBOX
    4. accountEnabled is false        -> MAILBOX_DISABLED
    5. a secondary `smtp:` address    -> WRONG_ALIAS (with primary_email)
    6. none of the user's SMTP addresses -> MAILBOX_NOT_FOUND
    7. probe answer not 2xx           -> the code table
Mailbox-level facts (2-4) come before WRONG_ALIAS, so that primary_email is never offered for a
mailbox that would fail anyway. docs/graph-client.md gives the reasons.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

from m365connect.codes import ErrorCode
from m365connect.microsoft.error_codes import map_response
from m365connect.microsoft.graph import GraphClient, GraphRequest, GraphResponse, TokenProvider

logger = logging.getLogger("m365connect.microsoft.mailbox_verification")

LOOKUP_SELECT = (
    "id,displayName,mail,userPrincipalName,proxyAddresses,accountEnabled,assignedLicenses,userType"
)
PROBE_SELECT = "userPurpose"
# Left as they are in a query value; everything else (space, +, &, #, %, =, ?, $...) is %-encoded.
_QUERY_SAFE = "():,/'@"
_PRIMARY, _SECONDARY = "SMTP:", "smtp:"  # the prefix's case is what tells them apart


@dataclass(frozen=True)
class MailboxVerification:
    """The verdict on one address; `error` None means the mailbox can be connected."""

    address: str
    error: ErrorCode | None
    user_id: str | None
    primary_email: str | None
    display_name: str | None


def lookup_url(address: str) -> str:
    """The lookup of one address: OData literal (`'` doubled), then %-encoded."""
    literal = f"{_SECONDARY}{address}".replace("'", "''")
    return _url("/users", {"$filter": f"proxyAddresses/any(x:x eq '{literal}')", "$select": LOOKUP_SELECT})


def probe_url(user_id: str) -> str:
    """The mailbox probe of one user."""
    return _url(f"/users/{quote(user_id, safe='')}/mailboxSettings", {"$select": PROBE_SELECT})


def _url(path: str, query: dict[str, str]) -> str:
    return path + "?" + "&".join(f"{name}={quote(value, safe=_QUERY_SAFE)}" for name, value in query.items())


async def verify_mailboxes(
    graph: GraphClient,
    token: TokenProvider,
    addresses: Sequence[str],
    *,
    probe_mailbox: bool,
    deadline: float,
) -> list[MailboxVerification]:
    """One verification per address, in order; addresses are lowercase, valid and distinct.

    Raises only what GraphClient raises (GraphAuthenticationError, the token provider's errors).
    """
    lookups = [GraphRequest(id=str(i), method="GET", url=lookup_url(a)) for i, a in enumerate(addresses)]
    answers = await graph.batch(token, lookups, deadline=deadline)
    results = [classify_lookup(a, answer) for a, answer in zip(addresses, answers, strict=True)]
    if probe_mailbox:
        results = await _probe(graph, token, results, deadline)
    return results


async def _probe(
    graph: GraphClient, token: TokenProvider, results: list[MailboxVerification], deadline: float
) -> list[MailboxVerification]:
    users = {i: r.user_id for i, r in enumerate(results) if r.error is None and r.user_id is not None}
    probes = [GraphRequest(id=str(i), method="GET", url=probe_url(user_id)) for i, user_id in users.items()]
    answers = await graph.batch(token, probes, deadline=deadline)
    probed = list(results)
    for i, answer in zip(users, answers, strict=True):
        if not answer.ok:
            probed[i] = replace(probed[i], error=map_response(answer))
    return probed


def classify_lookup(address: str, response: GraphResponse) -> MailboxVerification:
    """Rules 1-6 for one lookup answer."""
    if not response.ok:
        return _failed(address, map_response(response))
    users = response.body.get("value") if isinstance(response.body, dict) else None
    if not isinstance(users, list) or not all(isinstance(user, dict) for user in users):
        return _failed(address, ErrorCode.MICROSOFT_UNAVAILABLE)
    if len(users) != 1:
        if users:
            logger.warning("graph.lookup.ambiguous", extra={"users": len(users)})
        return _failed(address, ErrorCode.MAILBOX_NOT_FOUND)
    user: dict[str, Any] = users[0]
    user_id = _text(user.get("id"))
    if user_id is None:
        return _failed(address, ErrorCode.MICROSOFT_UNAVAILABLE)
    return MailboxVerification(
        address=address,
        error=user_problem(address, user),
        user_id=user_id,
        primary_email=primary_address(user),
        display_name=_text(user.get("displayName")),
    )


def user_problem(address: str, user: dict[str, Any]) -> ErrorCode | None:
    """Rules 3-6 for the one user whose proxyAddresses matched `address`."""
    proxies = _proxies(user)
    mail = _text(user.get("mail"))
    if str(user.get("userType") or "").casefold() == "guest" or not proxies or mail is None:
        return ErrorCode.NO_EXCHANGE_MAILBOX
    if user.get("accountEnabled") is False:
        return ErrorCode.MAILBOX_DISABLED
    wanted = address.lower()
    if wanted == mail.lower() or wanted in _addresses(proxies, _PRIMARY):
        return None
    if wanted in _addresses(proxies, _SECONDARY):
        return ErrorCode.WRONG_ALIAS
    return ErrorCode.MAILBOX_NOT_FOUND


def primary_address(user: dict[str, Any]) -> str | None:
    """The primary SMTP address (lowercase): the `SMTP:` proxy address, else `mail`."""
    primary = _addresses(_proxies(user), _PRIMARY)
    mail = _text(user.get("mail"))
    return primary[0] if primary else (mail.lower() if mail else None)


def _proxies(user: dict[str, Any]) -> list[str]:
    raw = user.get("proxyAddresses")
    return [p for p in raw if isinstance(p, str)] if isinstance(raw, list) else []


def _addresses(proxies: list[str], prefix: str) -> list[str]:
    # Case-SENSITIVE prefix; Microsoft's own example writes "SMTP: bob@contoso.com", hence the strip.
    return [p[len(prefix) :].strip().lower() for p in proxies if p.startswith(prefix)]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _failed(address: str, error: ErrorCode) -> MailboxVerification:
    return MailboxVerification(
        address=address, error=error, user_id=None, primary_email=None, display_name=None
    )
