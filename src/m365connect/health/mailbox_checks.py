"""Checking connected mailboxes: the Graph checks of a bulk request, batched per credential (API.md 6).

SPF/DKIM/DMARC are not refreshed: the flags describe the domain when the mailbox connected, and a DNS
change does not stop a mailbox from sending (docs/decisions.md). Only ACTIVE mailboxes are checked; a
FAILING one stays ACTIVE.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from m365connect.codes import ErrorCode
from m365connect.credentials import service as credentials
from m365connect.credentials.models import GraphCredential
from m365connect.credentials.sealing import open_for_use
from m365connect.db.base import utcnow
from m365connect.errors import ServiceUnavailable
from m365connect.health import announcements, repository
from m365connect.health.credential_checks import Verdict, store_refusal, verdict_of_refusal
from m365connect.mailboxes import bulk
from m365connect.mailboxes.models import Mailbox
from m365connect.microsoft.graph_errors import GraphAuthenticationError
from m365connect.microsoft.mailbox_verification import MailboxVerification
from m365connect.microsoft.token import AccessToken, ClientCredential, TokenRejected, TokenUnavailable

if TYPE_CHECKING:
    from m365connect.state import AppState

logger = logging.getLogger("m365connect.health")

# Microsoft did not answer in time: never a verdict on the mailbox.
TRANSIENT = frozenset({ErrorCode.MICROSOFT_THROTTLED, ErrorCode.MICROSOFT_UNAVAILABLE})
RETRY_AFTER = 30


async def check_mailboxes(
    state: AppState, credential_id: int, mailbox_ids: Sequence[int], *, interactive: bool = False
) -> None:
    """Re-verify these mailboxes of one credential (those no longer ACTIVE with it are skipped).

    A definitive per-item failure makes a mailbox FAILING with that code; a pass makes it OK; a credential
    that no longer obtains a token makes them FAILING with CREDENTIAL_EXPIRED / CREDENTIAL_INVALID (and the
    credential INVALID or EXPIRED). The definitive verdicts are stored even when some items got no answer;
    then ServiceUnavailable is raised so that the caller retries (the stored ones are not reported twice).
    """
    async with state.transactions.begin() as session:
        credential = await repository.get_credential(session, credential_id)
        mailboxes = await repository.active_mailboxes(
            session, credential_id=credential_id, mailbox_ids=mailbox_ids
        )
    if credential is None or not mailboxes:
        return
    now = utcnow()
    verdicts = await _ask(state, credential, mailboxes, now=now, interactive=interactive)
    if isinstance(verdicts, Verdict):
        state.metrics.health.checked("mailbox", "failing", len(mailboxes))
        async with state.transactions.begin() as session:  # its mailboxes fail with it
            await store_refusal(session, credential, verdicts, mailbox_ids=[m.id for m in mailboxes], now=now)
        return
    definitive = {mailbox_id: error for mailbox_id, error in verdicts.items() if error not in TRANSIENT}
    _count(state, verdicts)
    async with state.transactions.begin() as session:
        pending = await announcements.mailbox_changes(session, verdicts=definitive, now=now)
        await announcements.record(session, pending)
    if len(definitive) < len(verdicts):
        raise ServiceUnavailable(retry_after=RETRY_AFTER)


async def _ask(
    state: AppState,
    credential: GraphCredential,
    mailboxes: Sequence[Mailbox],
    *,
    now: datetime,
    interactive: bool,
) -> Verdict | dict[int, ErrorCode | None]:
    """Microsoft's refusal of the credential, or its verdict per mailbox (None: it passes). No answer at
    all (ServiceUnavailable) counts every mailbox's check as transient."""
    try:
        token_or_refusal = await _token(state, credential, now=now)
        if isinstance(token_or_refusal, Verdict):
            return token_or_refusal
        client_credential, token = token_or_refusal
        return await _verify(state, credential, client_credential, token, mailboxes, interactive=interactive)
    except ServiceUnavailable:
        state.metrics.health.checked("mailbox", "transient", len(mailboxes))
        raise


def _count(state: AppState, verdicts: dict[int, ErrorCode | None]) -> None:
    """One check per mailbox in the metrics: ok, failing (a definitive failure) or transient."""
    errors = list(verdicts.values())
    state.metrics.health.checked("mailbox", "ok", errors.count(None))
    state.metrics.health.checked("mailbox", "transient", sum(error in TRANSIENT for error in errors))
    failing = sum(error is not None and error not in TRANSIENT for error in errors)
    state.metrics.health.checked("mailbox", "failing", failing)


async def _token(
    state: AppState, credential: GraphCredential, *, now: datetime
) -> tuple[ClientCredential, AccessToken] | Verdict:
    """A token for the credential (cached, as a bulk request gets one), or Microsoft's refusal.

    A credential last found INVALID or EXPIRED is asked afresh: another process may still cache a token
    that Microsoft would no longer grant.
    """
    if credential.secret_expires_at <= now:
        return Verdict(status=credentials.EXPIRED, asked=False)
    services = state.credential_services
    client_credential = open_for_use(services.box, services.unreadable, credential)
    tokens = services.clouds.tokens(credential.cloud)
    try:
        if credential.verification_status == credentials.VALID:
            token = await tokens.acquire(client_credential)
        else:
            token = await tokens.verify(client_credential)
    except TokenRejected as refused:
        tokens.forget(client_credential)
        return verdict_of_refusal(refused.code)
    except TokenUnavailable as exc:
        raise ServiceUnavailable(retry_after=int(exc.retry_after) + 1) from None
    return client_credential, token


async def _verify(
    state: AppState,
    credential: GraphCredential,
    client_credential: ClientCredential,
    token: AccessToken,
    mailboxes: Sequence[Mailbox],
    *,
    interactive: bool,
) -> dict[int, ErrorCode | None]:
    services = state.bulk_services
    try:
        verified = await bulk.verify_addresses(
            services,
            credential.cloud,
            client_credential,
            token,
            [m.email for m in mailboxes],
            interactive=interactive,
        )
    except GraphAuthenticationError:
        # Graph refused a token Microsoft had just issued, twice: not a verdict on the mailboxes. The
        # credential's own check asks the identity platform.
        logger.warning("health.mailboxes.token_refused_by_graph", extra={"credential_id": credential.id})
        raise ServiceUnavailable(retry_after=RETRY_AFTER) from None
    allowed = bulk.may_send(token, send_probed=bulk.sends_probed(services, token))
    by_address = {result.address: result for result in verified}
    return {m.id: mailbox_error(m, by_address[m.email], may_send=allowed) for m in mailboxes}


def mailbox_error(mailbox: Mailbox, found: MailboxVerification, *, may_send: bool) -> ErrorCode | None:
    """The bulk request's verdict on the stored address, for the mailbox that was connected.

    The address now leading to another user (the old one deleted, the address reused) is that mailbox not
    being found; a token that may not send makes it MISSING_PERMISSIONS, as in a bulk request.
    """
    if found.error is not None:
        return found.error
    if found.user_id != mailbox.microsoft_user_id:
        return ErrorCode.MAILBOX_NOT_FOUND
    return None if may_send else ErrorCode.MISSING_PERMISSIONS
