"""Checking a credential: a token request, exactly as creating it makes one (API.md 6)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.codes import ErrorCode
from m365connect.credentials import service as credentials
from m365connect.credentials.models import GraphCredential
from m365connect.credentials.sealing import open_for_use
from m365connect.db.base import utcnow
from m365connect.errors import ServiceUnavailable, ValidationCodeError
from m365connect.health import announcements, repository
from m365connect.microsoft.token import AccessToken

if TYPE_CHECKING:
    from m365connect.state import AppState

logger = logging.getLogger("m365connect.health")


@dataclass(frozen=True)
class Verdict:
    """What Microsoft said of a credential: a token, or a refusal (`status` INVALID or EXPIRED)."""

    status: str
    token: AccessToken | None = None
    asked: bool = True  # False: its expiry date has passed, so Microsoft was not asked


def verdict_of_refusal(code: ErrorCode) -> Verdict:
    """Microsoft's definitive refusal: EXPIRED when it says the secret or certificate expired."""
    expired = code is ErrorCode.CLIENT_SECRET_EXPIRED
    return Verdict(status=credentials.EXPIRED if expired else credentials.INVALID)


async def check_credential(state: AppState, credential_id: int) -> None:
    """Verify one credential against Microsoft now and report what changed.

    A refusal (expired, wrong or deleted secret, app disabled or deleted...) makes it INVALID or EXPIRED
    and its mailboxes FAILING; a later grant makes it VALID again. A transient failure (throttling, 5xx,
    timeouts, DNS, the database) changes nothing and raises ServiceUnavailable (or the database's error)
    so that the caller retries. A secret that does not open raises 422 CREDENTIAL_UNREADABLE and changes
    nothing: that is the operator's key ring, not Microsoft's verdict. A deleted credential is no-op.
    """
    async with state.transactions.begin() as session:
        credential = await repository.get_credential(session, credential_id)
    if credential is None:
        return
    now = utcnow()
    try:
        verdict = await ask_microsoft(state, credential, now=now)
    except ServiceUnavailable:
        state.metrics.health.checked("credential", "transient")
        raise
    state.metrics.health.checked("credential", "ok" if verdict.token is not None else "failing")
    async with state.transactions.begin() as session:
        await store_verdict(session, credential, verdict, now=now)


async def ask_microsoft(state: AppState, credential: GraphCredential, *, now: datetime) -> Verdict:
    """A fresh token request with the stored secret (the creation path: always asks Microsoft)."""
    if credential.secret_expires_at <= now:
        return Verdict(status=credentials.EXPIRED, asked=False)
    services = state.credential_services
    client_credential = open_for_use(services.box, services.unreadable, credential)
    tokens = services.clouds.tokens(credential.cloud)
    try:
        token = await credentials.verify(tokens, client_credential)  # ServiceUnavailable when transient
    except ValidationCodeError as refused:
        tokens.forget(client_credential)  # no cached token outlives Microsoft's refusal in this process
        logger.info("health.credential.refused", extra={"credential_id": credential.id, "code": refused.code})
        return verdict_of_refusal(refused.code)
    return Verdict(status=credentials.VALID, token=token)


async def store_verdict(
    session: AsyncSession, checked: GraphCredential, verdict: Verdict, *, now: datetime
) -> None:
    """Store the verdict on the credential as it was checked, and report the changes.

    A verdict on a secret that was rotated meanwhile says nothing of the new one and is dropped.
    """
    credential = await repository.credential_now(session, checked.id)
    if credential is None or credential.secret_ciphertext != checked.secret_ciphertext:
        return
    if verdict.asked:
        credential.checked_at = now
        if verdict.token is not None:
            credential.verification_status = credentials.VALID
            credential.verified_at = now
            credential.granted_permissions = sorted(verdict.token.roles or ())
        else:
            credential.verification_status = verdict.status
    await session.flush()
    await announcements.announce_credential(session, credential_id=credential.id, now=now)


async def store_refusal(
    session: AsyncSession,
    checked: GraphCredential,
    verdict: Verdict,
    *,
    mailbox_ids: list[int],
    now: datetime,
) -> None:
    """A refusal met while checking mailboxes: the credential's verdict and these mailboxes' health
    (FAILING for want of a token), all changes first and their events last."""
    credential = await repository.credential_now(session, checked.id)
    if credential is None or credential.secret_ciphertext != checked.secret_ciphertext:
        return
    if verdict.asked:
        credential.checked_at = now
        credential.verification_status = verdict.status
    await session.flush()
    pending = await announcements.credential_changes(session, credential_id=credential.id, now=now)
    error = announcements.CREDENTIAL_FAILURES[verdict.status]
    pending += await announcements.mailbox_changes(
        session, verdicts=dict.fromkeys(mailbox_ids, error), now=now
    )
    await announcements.record(session, pending)
