"""Webhook signing secrets: made, sealed with the service's SecretBox, opened for a delivery, re-sealed by
`encryption rotate` (the same compare-and-set as client secrets, credentials/sealing.py)."""

from __future__ import annotations

import base64
import secrets

from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.credentials.sealing import ResealReport
from m365connect.crypto import SecretBox, SecretBoxError
from m365connect.webhooks import repository
from m365connect.webhooks.models import Webhook

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_aad(webhook_id: int) -> str:
    """Associated data binding a sealed secret to its subscription row."""
    return f"m365connect:webhooks:{webhook_id}:secret"


def seal(box: SecretBox, webhook: Webhook, secret: str) -> None:
    """Store `secret` sealed in the (flushed) row."""
    webhook.secret_ciphertext = box.seal(secret, associated_data=secret_aad(webhook.id))


def open_secret(box: SecretBox, webhook: Webhook) -> str:
    """The subscription's `whsec_` secret (SecretBoxError when it does not open)."""
    return box.open(webhook.secret_ciphertext, associated_data=secret_aad(webhook.id))


async def count_sealed_secrets(session: AsyncSession) -> int:
    """How many webhook secrets the database holds (a missing key file must not be regenerated then)."""
    return await repository.count_secrets(session)


async def reseal_all(session: AsyncSession, box: SecretBox) -> ResealReport:
    """Re-seal every webhook secret not sealed with the primary key; a row that does not open is reported
    (id and why) and skipped. Compare-and-set per row, like client secrets."""
    sealed = await repository.list_secrets(session)
    report = ResealReport(total=len(sealed))
    for webhook_id, ciphertext in sealed:
        try:
            if await _reseal_one(session, box, webhook_id=webhook_id, ciphertext=ciphertext):
                report.resealed += 1
        except SecretBoxError as exc:
            report.failures.append((webhook_id, str(exc)))
    return report


async def _reseal_one(session: AsyncSession, box: SecretBox, *, webhook_id: int, ciphertext: bytes) -> bool:
    current: bytes | None = ciphertext
    aad = secret_aad(webhook_id)
    for _attempt in range(3):
        if current is None:
            return False  # deleted meanwhile
        plaintext = box.open(current, associated_data=aad)
        if not box.needs_rotation(current):
            return False
        fresh = box.seal(plaintext, associated_data=aad)
        if await repository.replace_secret(session, webhook_id=webhook_id, old=current, new=fresh):
            return True
        current = await repository.get_secret(session, webhook_id=webhook_id)
    return False
