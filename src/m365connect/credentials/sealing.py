"""Stored client secrets and the key ring: opening one for use, re-sealing all (rotation), readiness.

A secret that does not open is an operator's problem (a key left the ring, a row was altered), so a
request that needs it answers `422 CREDENTIAL_UNREADABLE` and the log names the credential; the
account can repair it itself by sending the secret again (PATCH re-seals without opening the old one).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.codes import ErrorCode
from m365connect.credentials import repository
from m365connect.credentials.models import GraphCredential
from m365connect.crypto import KeyNotInRing, SecretBox, SecretBoxError, credential_secret_aad
from m365connect.errors import ValidationCodeError
from m365connect.microsoft.token import ClientCredential

logger = logging.getLogger("m365connect.credentials")
_LOGGED_IDS = 100  # a start-up line names at most this many credentials (and says how many in all)


def open_client_credential(box: SecretBox, credential: GraphCredential) -> ClientCredential:
    """The stored credential with its secret decrypted, for a token request (SecretBoxError if it cannot)."""
    secret = box.open(credential.secret_ciphertext, associated_data=credential_secret_aad(credential.id))
    return ClientCredential(
        credential.tenant_id,
        credential.client_id,
        secret,
        certificate_thumbprint=credential.certificate_thumbprint,
    )


class UnreadableSecrets:
    """Ids of credentials whose secret is sealed with a key of the ring but does not open with it (moved
    to another row, altered). Secrets sealed with a key missing from the ring are counted in SQL from their
    headers at every probe instead (`secrets_without_key`).

    Every row is tried once (at start-up, or by the first probe that reaches the database); after that a
    probe re-tries only the rows found bad, by that scan or by a request that failed to open one: /readyz
    runs every few seconds and must not decrypt 10,000 rows each time (bench/secrets_scan.py). A repair
    made anywhere (a new secret through another replica, `encryption rotate`, a delete) clears the row at
    the next probe. A row altered while the service runs is found by the first request that needs it.
    """

    def __init__(self) -> None:
        self._bad: set[int] = set()
        self._scanned = False

    def record(self, credential_id: int) -> None:
        """A request could not open this credential's secret."""
        self._bad.add(credential_id)

    async def scan(self, session: AsyncSession, box: SecretBox) -> None:
        """Try every stored secret once; log the ids of those that do not open (for want of a key or not)."""
        found, key_missing = _not_opening(box, await repository.list_secrets(session))
        self._bad |= found
        self._scanned = True
        if found or key_missing:
            named = sorted(found | key_missing)
            logger.warning(
                "credential.secret.unreadable",
                extra={
                    "count": len(named),
                    "key_missing": len(key_missing),
                    "credential_ids": named[:_LOGGED_IDS],
                },
            )

    async def count(self, session: AsyncSession, box: SecretBox) -> int:
        """How many stored secrets do not open; cheap once the first scan was done."""
        if not self._scanned:
            await self.scan(session, box)
            return len(self._bad)
        checked = set(self._bad)
        if checked:
            rows = await repository.secrets_of(session, credential_ids=checked)
            still_bad, _ = _not_opening(box, rows)
            self._bad -= checked - still_bad  # ids recorded meanwhile by a request are kept
        return len(self._bad)


def _not_opening(box: SecretBox, sealed: Iterable[tuple[int, bytes]]) -> tuple[set[int], set[int]]:
    """Ids whose secret has a key in the ring yet does not open, and ids sealed with a key not in it."""
    failed: set[int] = set()
    key_missing: set[int] = set()
    for credential_id, ciphertext in sealed:
        try:
            box.open(ciphertext, associated_data=credential_secret_aad(credential_id))
        except KeyNotInRing:
            key_missing.add(credential_id)
        except SecretBoxError:
            failed.add(credential_id)
    return failed, key_missing


def open_for_use(
    box: SecretBox, unreadable: UnreadableSecrets, credential: GraphCredential
) -> ClientCredential:
    """The decrypted credential, or 422 CREDENTIAL_UNREADABLE with the credential named in the log."""
    try:
        return open_client_credential(box, credential)
    except SecretBoxError as exc:
        if not isinstance(exc, KeyNotInRing):
            unreadable.record(credential.id)
        # The reason names a key id at most (4 bytes of its hash), never a key, secret or ciphertext.
        logger.warning(
            "credential.secret.unreadable", extra={"credential_id": credential.id, "reason": str(exc)}
        )
        raise ValidationCodeError(ErrorCode.CREDENTIAL_UNREADABLE) from None


async def secrets_without_key(session: AsyncSession, box: SecretBox) -> int:
    """How many stored secrets no key of the ring can open (a key removed before `encryption rotate`)."""
    counts = await repository.sealing_key_ids(session)
    return sum(count for key_id, count in counts.items() if not box.can_open(key_id))


@dataclass
class ResealReport:
    """What `encryption rotate` did: re-sealed rows, rows seen, and each row it could not open with why."""

    resealed: int = 0
    total: int = 0
    failures: list[tuple[int, str]] = field(default_factory=list)


async def reseal_all(session: AsyncSession, box: SecretBox) -> ResealReport:
    """Re-encrypt every secret not sealed with the primary key; a row that does not open is reported and
    skipped, so one bad row never keeps the others on an old key.

    Each row is replaced only if it still holds the ciphertext we read (compare-and-set), so a secret
    rotated through the API while this runs is never overwritten with the old one re-sealed.
    """
    sealed = await repository.list_secrets(session)
    report = ResealReport(total=len(sealed))
    for credential_id, ciphertext in sealed:
        try:
            if await _reseal_one(session, box, credential_id=credential_id, ciphertext=ciphertext):
                report.resealed += 1
        except SecretBoxError as exc:
            report.failures.append((credential_id, str(exc)))
    return report


async def _reseal_one(
    session: AsyncSession, box: SecretBox, *, credential_id: int, ciphertext: bytes
) -> bool:
    current: bytes | None = ciphertext
    aad = credential_secret_aad(credential_id)
    for _attempt in range(3):
        if current is None:
            return False  # deleted meanwhile
        plaintext = box.open(current, associated_data=aad)  # every row is tried: rotate also audits
        if not box.needs_rotation(current):
            return False
        fresh = box.seal(plaintext, associated_data=aad)
        if await repository.replace_secret(session, credential_id=credential_id, old=current, new=fresh):
            return True
        current = await repository.get_secret(session, credential_id=credential_id)  # changed meanwhile
    return False


async def count_sealed_secrets(session: AsyncSession) -> int:
    """How many client secrets the database holds (sealed with whatever key)."""
    return await repository.count_all(session)
