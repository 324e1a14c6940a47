"""Bulk connection of Microsoft mailboxes (API.md §3).

Three phases, so that no database transaction stays open while Microsoft and DNS answer (a unit of work
of two transactions, m365connect.db.transactions):
1. read (transactions of their own): resolve the credential (`authorise`, then a token), find addresses
   already connected;
2. verify (no transaction): Graph lookups (batched) and SPF/DKIM/DMARC per domain, concurrently;
3. write (the caller's transaction, `write`): insert every verified mailbox. The partial unique index
   settles concurrent requests; the credential foreign key settles a racing credential deletion (then
   the whole request answers 422 INVALID_CREDENTIAL_ID and nothing is saved).

A bulk job (m365connect.jobs) runs the same phases on each chunk of its items, its write in the chunk's
own transaction: one copy of every rule.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.codes import ErrorCode
from m365connect.credentials import service as credentials
from m365connect.credentials.models import GraphCredential
from m365connect.db.base import utcnow
from m365connect.db.transactions import Transactions
from m365connect.deliverability import DeliverabilityChecker, DomainDeliverability
from m365connect.errors import ValidationCodeError
from m365connect.events.service import record_events
from m365connect.events.types import EventType
from m365connect.mailboxes import repository
from m365connect.mailboxes.addresses import PlannedItem, plan
from m365connect.mailboxes.models import ACTIVE, HEALTH_OK, Mailbox
from m365connect.mailboxes.schemas import BulkRequest, BulkResult, CheckedDeliverability, mailbox_type_of
from m365connect.mailboxes.service import stored_deliverability, to_read
from m365connect.microsoft.graph_errors import GraphAuthenticationError
from m365connect.microsoft.mailbox_verification import MailboxVerification, verify_mailboxes
from m365connect.microsoft.pacing import PaceScope
from m365connect.microsoft.token import AccessToken, ClientCredential

SUPPORTED_AUTH_TYPE = "APP_ONLY"
MAILBOX_PROBE_ROLES = frozenset({"MailboxSettings.Read", "MailboxSettings.ReadWrite"})
SEND_ROLE = "Mail.Send"


@dataclass(frozen=True)
class BulkServices:
    """What a bulk connection needs besides the session."""

    credentials: credentials.Services  # its clouds give the Graph client of the credential's cloud
    checker: DeliverabilityChecker
    max_accounts: int
    deadline_seconds: float
    send_probe: str = "auto"  # settings.send_probe: "auto" probes when the token lacks Mail.Send; "off"


def check_request(request: BulkRequest, *, max_accounts: int) -> None:
    """The request-level 422s, before anything is looked up."""
    if (request.auth_type or SUPPORTED_AUTH_TYPE) != SUPPORTED_AUTH_TYPE:
        raise ValidationCodeError(ErrorCode.UNSUPPORTED_AUTH_TYPE)
    if not request.accounts:
        raise ValidationCodeError(ErrorCode.EMPTY_ACCOUNTS)
    if len(request.accounts) > max_accounts:
        raise ValidationCodeError(ErrorCode.TOO_MANY_ACCOUNTS)


@dataclass(frozen=True)
class Authorised:
    """A credential resolved for a bulk connection and the token it obtained."""

    credential: GraphCredential
    client_credential: ClientCredential
    token: AccessToken


async def authorise(
    transactions: Transactions, services: BulkServices, *, account_id: int, credential_id: int | None
) -> Authorised:
    """The credential (or its documented 422) and a token for it (no transaction open meanwhile)."""
    async with transactions.begin() as session:
        credential = await credentials.resolve_for_bulk(
            session, account_id=account_id, credential_id=credential_id
        )
    client_credential, token = await credentials.token_for_bulk(
        transactions, services.credentials, credential=credential
    )
    return Authorised(credential=credential, client_credential=client_credential, token=token)


async def connect_bulk(
    transactions: Transactions, services: BulkServices, *, account_id: int, request: BulkRequest
) -> list[BulkResult]:
    """Connect every submitted mailbox that Microsoft confirms; one result per item, in request order."""
    check_request(request, max_accounts=services.max_accounts)
    items = plan(request.accounts)
    authorised = await authorise(
        transactions, services, account_id=account_id, credential_id=request.credential_id
    )
    verified = await verify(
        transactions, services, account_id=account_id, items=items, authorised=authorised, interactive=True
    )
    async with transactions.begin() as session:
        return await write(session, account_id=account_id, items=items, verified=verified)


async def verify(
    transactions: Transactions,
    services: BulkServices,
    *,
    account_id: int,
    items: Sequence[PlannedItem],
    authorised: Authorised,
    interactive: bool,
) -> Verified:
    """The read and verify phases: addresses already connected, then Microsoft and DNS (no transaction
    open while they answer). A bulk job's chunk calls this too: one set of rules for both; `interactive`
    (a caller waits for the answer) goes before background work in Graph's budgets."""
    addresses = [item.address for item in items if item.address is not None]
    async with transactions.begin() as session:
        existing = await repository.active_by_email(session, account_id=account_id, emails=addresses)
    to_verify = [address for address in addresses if address not in existing]
    pending = set(to_verify)
    domains = sorted({item.domain for item in items if item.domain and item.address in pending})
    token = authorised.token
    by_address, dns = await _verify(
        services,
        authorised.credential.cloud,
        authorised.client_credential,
        token,
        to_verify,
        domains,
        interactive=interactive,
    )
    return Verified(
        credential=authorised.credential,
        token=token,
        existing=existing,
        verified=by_address,
        dns=dns,
        send_probed=sends_probed(services, token),
    )


async def write(
    session: AsyncSession, *, account_id: int, items: Sequence[PlannedItem], verified: Verified
) -> list[BulkResult]:
    """The write phase, in the caller's transaction: insert the verified mailboxes and their
    `mailbox.connected` events; one result per item, in order."""
    rows = _rows(account_id=account_id, items=items, outcome=verified)
    inserted = await _insert(session, rows=rows)
    if len(inserted) < len(verified.to_insert):
        verified.existing.update(
            await repository.active_by_email(
                session,
                account_id=account_id,
                emails=[a for a in verified.to_insert if a not in inserted],
            )
        )
    await record_events(session, account_id=account_id, events=_connected_events(rows, inserted))
    return [verified.result(item, inserted) for item in items]


async def _verify(
    services: BulkServices,
    cloud: str,
    client_credential: ClientCredential,
    token: AccessToken,
    addresses: list[str],
    domains: list[str],
    *,
    interactive: bool,
) -> tuple[dict[str, MailboxVerification], dict[str, DomainDeliverability]]:
    """Graph verification and the domains' SPF/DKIM/DMARC, concurrently."""
    # The verdicts depend on the cloud (its SPF include, its DKIM targets): checked for the credential's.
    checks = asyncio.create_task(services.checker.check_domains(domains, cloud=cloud))
    try:
        verified = await verify_addresses(
            services, cloud, client_credential, token, addresses, interactive=interactive
        )
    except GraphAuthenticationError:
        checks.cancel()
        raise ValidationCodeError(ErrorCode.INVALID_CREDENTIAL_ID) from None
    except BaseException:
        checks.cancel()
        raise
    return {result.address: result for result in verified}, await checks


async def verify_addresses(
    services: BulkServices,
    cloud: str,
    client_credential: ClientCredential,
    token: AccessToken,
    addresses: list[str],
    *,
    interactive: bool,
) -> list[MailboxVerification]:
    """The Graph checks of API.md §3 for these addresses, batched, as a bulk request makes them (the
    background verification of connected mailboxes uses this too), paced in the credential's budgets
    (`interactive`: a caller waits for it). Raises GraphAuthenticationError."""
    return await verify_mailboxes(
        services.credentials.clouds.graph(cloud),
        services.credentials.clouds.tokens(cloud).provider(client_credential),
        addresses,
        probe_mailbox=bool(token.roles and token.roles & MAILBOX_PROBE_ROLES),
        deadline=time.monotonic() + services.deadline_seconds,
        probe_send=sends_probed(services, token),
        scope=PaceScope(
            app_id=client_credential.client_id, tenant_id=client_credential.tenant, interactive=interactive
        ),
    )


def may_send(token: AccessToken, *, send_probed: bool) -> bool:
    """Whether a verified mailbox may be used: the token has Mail.Send, or each mailbox's send right was
    probed (an unreadable token: assume yes). Otherwise every verified mailbox is MISSING_PERMISSIONS."""
    return token.roles is None or SEND_ROLE in token.roles or send_probed


def sends_probed(services: BulkServices, token: AccessToken) -> bool:
    """Whether each mailbox's send right is probed: the token's roles lack Mail.Send, which an Exchange
    RBAC for Applications scope grants without showing it in the token (API.md §3)."""
    return services.send_probe == "auto" and token.roles is not None and SEND_ROLE not in token.roles


@dataclass
class Verified:
    """What the read and verify phases found, from which the write phase inserts and answers."""

    credential: GraphCredential
    token: AccessToken
    existing: dict[str, Mailbox]
    verified: dict[str, MailboxVerification]
    dns: dict[str, DomainDeliverability]
    send_probed: bool = False  # each verification then carries Exchange's own answer on sending

    @cached_property
    def to_insert(self) -> dict[str, MailboxVerification]:
        """Addresses Microsoft confirmed and that the app may send from (an unreadable token: assume yes)."""
        if not may_send(self.token, send_probed=self.send_probed):
            return {}
        return {address: found for address, found in self.verified.items() if found.error is None}

    def result(self, item: PlannedItem, inserted: dict[str, int]) -> BulkResult:
        """The wire result of one submitted item."""
        if item.error is not None or item.address is None:
            return failure(item, item.error or ErrorCode.INVALID_EMAIL, name=item.display_name)
        if item.address in inserted:
            return self._connected(item, inserted[item.address])
        existing = self.existing.get(item.address)
        if existing is not None:
            if existing.credential_id != self.credential.id:
                return failure(
                    item, ErrorCode.MAILBOX_ALREADY_CONNECTED, name=item.display_name or existing.name
                )
            return BulkResult(
                success=True,
                id=existing.id,
                email=item.email,
                name=item.display_name or existing.name,
                # The stored flags; why each is what it is was not kept, so no reasons.
                deliverability=CheckedDeliverability(**stored_deliverability(existing).model_dump()),
                error=None,
                mailbox_type=mailbox_type_of(existing.mailbox_type),
                already_connected=True,
            )
        verification = self.verified[item.address]
        name = item.display_name or verification.display_name
        if verification.error is not None:
            primary = verification.primary_email if verification.error is ErrorCode.WRONG_ALIAS else None
            return failure(
                item,
                verification.error,
                name=name,
                primary_email=primary,
                mailbox_type=verification.mailbox_type,
            )
        return failure(item, ErrorCode.MISSING_PERMISSIONS, name=name, mailbox_type=verification.mailbox_type)

    def _connected(self, item: PlannedItem, mailbox_id: int) -> BulkResult:
        verification = self.verified[item.address or ""]
        return BulkResult(
            success=True,
            id=mailbox_id,
            email=item.email,
            name=item.display_name or verification.display_name,
            deliverability=self.deliverability(item.domain),
            error=None,
            mailbox_type=mailbox_type_of(verification.mailbox_type),
        )

    def deliverability(self, domain: str | None) -> CheckedDeliverability:
        """The domain's flags and their reasons (false, without a reason, when it could not be checked)."""
        checked = self.dns.get(domain or "")
        if checked is None:
            return CheckedDeliverability(spf_correct=False, dkim_correct=False, dmarc_correct=False)
        return CheckedDeliverability(
            spf_correct=checked.spf_correct,
            dkim_correct=checked.dkim_correct,
            dmarc_correct=checked.dmarc_correct,
            spf_reason=checked.spf_reason,
            dkim_reason=checked.dkim_reason,
            dmarc_reason=checked.dmarc_reason,
        )


def failure(
    item: PlannedItem,
    error: ErrorCode,
    *,
    name: str | None,
    primary_email: str | None = None,
    mailbox_type: str | None = None,
) -> BulkResult:
    return BulkResult(
        success=False,
        id=None,
        email=item.email,
        name=name,
        deliverability=None,
        error=error,
        mailbox_type=mailbox_type_of(mailbox_type),
        primary_email=primary_email,
    )


def _rows(*, account_id: int, items: Sequence[PlannedItem], outcome: Verified) -> list[dict[str, Any]]:
    now = utcnow()
    rows = []
    for item in items:
        verification = outcome.to_insert.get(item.address or "")
        if verification is None or item.address in outcome.existing:
            continue
        flags = outcome.deliverability(item.domain)
        rows.append(
            {
                "account_id": account_id,
                "credential_id": outcome.credential.id,
                "email": item.address,
                "name": item.display_name or verification.display_name,
                "microsoft_user_id": verification.user_id,
                "status": ACTIVE,
                "spf_correct": flags.spf_correct,
                "dkim_correct": flags.dkim_correct,
                "dmarc_correct": flags.dmarc_correct,
                "mailbox_type": verification.mailbox_type,
                "connected_at": now,
            }
        )
    return rows


async def _insert(session: AsyncSession, *, rows: list[dict[str, Any]]) -> dict[str, int]:
    try:
        async with session.begin_nested():
            return await repository.insert_active(session, rows=rows)
    except IntegrityError:
        # The credential was deleted while Microsoft was answering: nothing of this request is saved.
        raise ValidationCodeError(ErrorCode.INVALID_CREDENTIAL_ID) from None


def _connected_events(
    rows: list[dict[str, Any]], inserted: dict[str, int]
) -> list[tuple[EventType, dict[str, Any]]]:
    """One `mailbox.connected` per mailbox this request inserted, in id order: the mailbox object."""
    connected = sorted((inserted[row["email"]], row) for row in rows if row["email"] in inserted)
    return [
        (EventType.MAILBOX_CONNECTED, to_read(_Inserted(id=mailbox_id, **row)).model_dump(mode="json"))
        for mailbox_id, row in connected
    ]


@dataclass(frozen=True, slots=True)
class _Inserted:
    """A mailbox row as inserted, for its event's `data` (service.MailboxFields: no ORM object per row)."""

    id: int
    account_id: int
    credential_id: int
    email: str
    name: str | None
    microsoft_user_id: str
    status: str
    spf_correct: bool
    dkim_correct: bool
    dmarc_correct: bool | None
    mailbox_type: str | None
    connected_at: datetime
    disconnected_at: datetime | None = None
    # A new mailbox is OK and not checked since it connected (the connection verified it).
    health_state: str = HEALTH_OK
    health_error: str | None = None
    health_checked_at: datetime | None = None
    failing_since: datetime | None = None
