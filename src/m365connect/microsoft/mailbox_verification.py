"""Verify addresses against a tenant: who owns each one, what kind of mailbox, can the app use it?

Step 1, lookup: one `$batch` item per address, `GET /users?$filter=proxyAddresses/any(...)`, since an
alias does not resolve through `/users/{upn}` (reference §4.1-4.2). Step 2, probe (when the token has
MailboxSettings.Read/ReadWrite): a second wave, one `GET /users/{id}/mailboxSettings?$select=userPurpose`
per user that passed rules 1-3, so that its batches are full too. Step 3, send probe (when the token's
roles lack Mail.Send and the send probe is on): for the same users, concurrently with step 2, one
`POST /users/{id}/sendMail` whose message has no recipients, so that nothing can be delivered: Exchange
checks the app's right to send as the mailbox (Entra role or an RBAC for Applications scope) before it reads
the message, then refuses it with 400 ErrorInvalidRecipients; a mailbox the app may not send as answers
403 ErrorAccessDenied (docs/graph-client.md, "The send probe"). The first rule that applies decides:

    1. lookup answer not 2xx          -> the code table (error_codes.py)
    2. no user, or more than one      -> MAILBOX_NOT_FOUND
    3. Guest, no proxyAddresses, or no mail -> NO_EXCHANGE_MAILBOX
    4. probe answer not 2xx           -> the code table
    5. userPurpose neither user nor shared -> UNSUPPORTED_MAILBOX_TYPE (room, equipment, linked, others)
    6. accountEnabled false, and userPurpose is not shared -> MAILBOX_DISABLED
    6b. send probe not 400 ErrorInvalidRecipients -> MAILBOX_ACCESS_DENIED (403), else the code table
    7. a secondary `smtp:` address    -> WRONG_ALIAS (with primary_email)
    8. none of the user's SMTP addresses -> MAILBOX_NOT_FOUND
Mailbox-level facts (2-6) come before WRONG_ALIAS, so that primary_email is never offered for a
mailbox that would fail anyway. Exchange creates shared mailboxes with sign-in blocked and app-only
sendMail works from them, hence rule 6's exception; without the probe nothing in the directory tells a
shared mailbox from a disabled user or a room, so a disabled account stays MAILBOX_DISABLED and
`mailbox_type` is None (docs/decisions.md). docs/graph-client.md gives the reasons and sources.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from m365connect.codes import ErrorCode
from m365connect.microsoft.error_codes import map_response
from m365connect.microsoft.graph import GraphClient, GraphRequest, GraphResponse, TokenProvider
from m365connect.microsoft.pacing import PaceScope

logger = logging.getLogger("m365connect.microsoft.mailbox_verification")

LOOKUP_SELECT = (
    "id,displayName,mail,userPrincipalName,proxyAddresses,accountEnabled,assignedLicenses,userType"
)
PROBE_SELECT = "userPurpose"
# The userPurpose values that can be connected; they are also the wire's `mailbox_type`.
MAILBOX_TYPES = ("user", "shared")
# Left as they are in a query value; everything else (space, +, &, #, %, =, ?, $...) is %-encoded.
_QUERY_SAFE = "():,/'@"
_PRIMARY, _SECONDARY = "SMTP:", "smtp:"  # the prefix's case is what tells them apart
# No recipients: Exchange can only refuse it (400 ErrorInvalidRecipients), and nothing is kept in Sent Items.
SEND_PROBE_BODY = {
    "message": {"subject": "m365connect permission check (no recipients, never delivered)"},
    "saveToSentItems": False,
}


@dataclass(frozen=True)
class MailboxVerification:
    """The verdict on one address; `error` None means the mailbox can be connected."""

    address: str
    error: ErrorCode | None
    user_id: str | None
    primary_email: str | None
    display_name: str | None
    mailbox_type: str | None = None  # "user" or "shared" when the probe said so; None: not known


@dataclass(frozen=True)
class _Found:
    """Rules 1-2 passed: exactly one user carries the address."""

    address: str
    user: dict[str, Any]
    user_id: str


def lookup_url(address: str) -> str:
    """The lookup of one address: OData literal (`'` doubled), then %-encoded."""
    literal = f"{_SECONDARY}{address}".replace("'", "''")
    return _url("/users", {"$filter": f"proxyAddresses/any(x:x eq '{literal}')", "$select": LOOKUP_SELECT})


def probe_url(user_id: str) -> str:
    """The mailbox probe of one user."""
    return _url(f"/users/{quote(user_id, safe='')}/mailboxSettings", {"$select": PROBE_SELECT})


def send_probe_request(item_id: str, user_id: str) -> GraphRequest:
    """The send probe of one user: sendMail with a message that has no recipients."""
    return GraphRequest(
        id=item_id,
        method="POST",
        url=f"/users/{quote(user_id, safe='')}/sendMail",
        headers={"Content-Type": "application/json"},
        body=SEND_PROBE_BODY,
    )


def send_probe_error(response: GraphResponse) -> ErrorCode | None:
    """What a send probe's answer says; None: Exchange lets the app send as the mailbox."""
    error = response.body.get("error") if isinstance(response.body, dict) else None
    code = str(error.get("code") or "") if isinstance(error, dict) else ""
    if response.status == 400 and code.casefold() == "errorinvalidrecipients":
        return None
    if response.ok:  # Exchange accepted a message without recipients: it was allowed, and nothing to send
        logger.warning("graph.send_probe.accepted", extra={"status": response.status})
        return None
    if response.status == 403 and code.casefold() == "erroraccessdenied":
        return ErrorCode.MAILBOX_ACCESS_DENIED  # the mailbox is outside every grant the app has
    return map_response(response)


def _url(path: str, query: dict[str, str]) -> str:
    return path + "?" + "&".join(f"{name}={quote(value, safe=_QUERY_SAFE)}" for name, value in query.items())


async def verify_mailboxes(
    graph: GraphClient,
    token: TokenProvider,
    addresses: Sequence[str],
    *,
    probe_mailbox: bool,
    deadline: float,
    probe_send: bool = False,
    scope: PaceScope | None = None,
) -> list[MailboxVerification]:
    """One verification per address, in order; addresses are lowercase, valid and distinct. `scope`
    paces the lookups (directory) and probes (Outlook) when the client has a pacer.

    Raises only what GraphClient raises (GraphAuthenticationError, the token provider's errors).
    """
    lookups = [GraphRequest(id=str(i), method="GET", url=lookup_url(a)) for i, a in enumerate(addresses)]
    answers = await graph.batch(token, lookups, deadline=deadline, scope=scope)
    found = [find_user(a, answer) for a, answer in zip(addresses, answers, strict=True)]
    settings_probe = _get_settings if probe_mailbox else None
    send_probe = send_probe_request if probe_send else None
    probes, sends = await asyncio.gather(
        _probe(graph, token, found, deadline, settings_probe, scope),
        _probe(graph, token, found, deadline, send_probe, scope),
    )
    return [
        decide(item, probes.get(i), sends.get(i)) if isinstance(item, _Found) else item
        for i, item in enumerate(found)
    ]


def _get_settings(item_id: str, user_id: str) -> GraphRequest:
    return GraphRequest(id=item_id, method="GET", url=probe_url(user_id))


async def _probe(
    graph: GraphClient,
    token: TokenProvider,
    found: list[_Found | MailboxVerification],
    deadline: float,
    make: Callable[[str, str], GraphRequest] | None,
    scope: PaceScope | None,
) -> dict[int, GraphResponse]:
    # Every user with an Exchange recipient is probed, aliases and disabled accounts included: the
    # mailbox type decides rules 5-6, which come before WRONG_ALIAS.
    if make is None:
        return {}
    users = {i: f.user_id for i, f in enumerate(found) if isinstance(f, _Found) and _is_recipient(f.user)}
    probes = [make(str(i), user_id) for i, user_id in users.items()]
    answers = await graph.batch(token, probes, deadline=deadline, scope=scope)
    return dict(zip(users, answers, strict=True))


def find_user(address: str, response: GraphResponse) -> _Found | MailboxVerification:
    """Rules 1-2: the one user of a lookup answer, else the failed verification."""
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
    return _Found(address=address, user=user, user_id=user_id)


def decide(
    found: _Found, probe: GraphResponse | None, send: GraphResponse | None = None
) -> MailboxVerification:
    """Rules 3-8 for a found user, with its probe answers (None: not probed)."""
    purpose = user_purpose(probe.body) if probe is not None and probe.ok else None
    probe_error = map_response(probe) if probe is not None and not probe.ok else None
    send_error = send_probe_error(send) if send is not None else None
    problem = user_problem(
        found.address, found.user, purpose=purpose, probe_error=probe_error, send_error=send_error
    )
    return MailboxVerification(
        address=found.address,
        error=problem,
        user_id=found.user_id,
        primary_email=primary_address(found.user),
        display_name=_text(found.user.get("displayName")),
        mailbox_type=purpose if purpose in MAILBOX_TYPES else None,
    )


def user_purpose(body: Any) -> str | None:
    """mailboxSettings' userPurpose, lowercased; v1.0 answers a string, older answers {"value": ...}."""
    raw = body.get("userPurpose") if isinstance(body, dict) else None
    if isinstance(raw, dict):
        raw = raw.get("value")
    return raw.casefold() if isinstance(raw, str) and raw else None


def user_problem(
    address: str,
    user: dict[str, Any],
    *,
    purpose: str | None = None,
    probe_error: ErrorCode | None = None,
    send_error: ErrorCode | None = None,
) -> ErrorCode | None:
    """Rules 3-8 for the one user whose proxyAddresses matched `address`.

    `purpose` is the probe's userPurpose (None: not probed, or not said); `probe_error` its failure;
    `send_error` what the send probe said (None: allowed, or not probed).
    """
    if not _is_recipient(user):
        return ErrorCode.NO_EXCHANGE_MAILBOX
    if probe_error is not None:
        return probe_error
    if purpose is not None and purpose not in MAILBOX_TYPES:
        return ErrorCode.UNSUPPORTED_MAILBOX_TYPE
    if user.get("accountEnabled") is False and purpose != "shared":
        return ErrorCode.MAILBOX_DISABLED
    if send_error is not None:
        return send_error
    proxies = _proxies(user)
    mail = _text(user.get("mail")) or ""
    wanted = address.lower()
    if wanted == mail.lower() or wanted in _addresses(proxies, _PRIMARY):
        return None
    if wanted in _addresses(proxies, _SECONDARY):
        return ErrorCode.WRONG_ALIAS
    return ErrorCode.MAILBOX_NOT_FOUND


def _is_recipient(user: dict[str, Any]) -> bool:
    """Rule 3: a member with proxy addresses and `mail` (a guest's mailbox is in its home tenant)."""
    guest = str(user.get("userType") or "").casefold() == "guest"
    return not guest and bool(_proxies(user)) and _text(user.get("mail")) is not None


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
