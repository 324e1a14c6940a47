"""SQL for Graph credentials."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.credentials.models import GraphCredential
from m365connect.crypto import KEY_ID_SLICE


async def list_for_account(session: AsyncSession, *, account_id: int) -> Sequence[GraphCredential]:
    """The account's credentials, oldest first."""
    rows = await session.scalars(
        select(GraphCredential).where(GraphCredential.account_id == account_id).order_by(GraphCredential.id)
    )
    return rows.all()


async def get_for_account(
    session: AsyncSession, *, account_id: int, credential_id: int
) -> GraphCredential | None:
    """One of the account's credentials; None for a missing id or another account's."""
    return await session.scalar(
        select(GraphCredential).where(
            GraphCredential.id == credential_id, GraphCredential.account_id == account_id
        )
    )


async def find_duplicate(
    session: AsyncSession, *, account_id: int, tenant_keys: Sequence[str], client_id: str
) -> GraphCredential | None:
    """A credential of this account for the same tenant (any of its spellings) and client."""
    return await session.scalar(
        select(GraphCredential).where(
            GraphCredential.account_id == account_id,
            GraphCredential.client_id == client_id,
            func.lower(GraphCredential.tenant_key).in_([key.lower() for key in tenant_keys])
            | func.lower(GraphCredential.tenant_id).in_([key.lower() for key in tenant_keys]),
        )
    )


async def count_for_account(session: AsyncSession, *, account_id: int) -> int:
    """How many credentials the account has."""
    count = await session.scalar(
        select(func.count()).select_from(GraphCredential).where(GraphCredential.account_id == account_id)
    )
    return int(count or 0)


async def add(session: AsyncSession, *, credential: GraphCredential) -> GraphCredential:
    """Insert; the unique (account, tenant, client) constraint may raise IntegrityError."""
    session.add(credential)
    await session.flush()
    return credential


async def set_verification(session: AsyncSession, *, credential: GraphCredential) -> None:
    """Store the verification verdict of a credential loaded in another transaction (status, times, roles)."""
    await session.execute(
        update(GraphCredential)
        .where(GraphCredential.id == credential.id)
        .values(
            verification_status=credential.verification_status,
            verified_at=credential.verified_at,
            checked_at=credential.checked_at,
            granted_permissions=credential.granted_permissions,
        )
    )


async def delete_for_account(
    session: AsyncSession, *, account_id: int, credential_id: int
) -> GraphCredential | None:
    """Delete; the row as it was (None when there was none). Raises IntegrityError when an ACTIVE mailbox
    still uses it (the CHECK constraint)."""
    deleted = await session.scalars(
        delete(GraphCredential)
        .where(GraphCredential.id == credential_id, GraphCredential.account_id == account_id)
        .returning(GraphCredential)
    )
    return deleted.one_or_none()


async def list_secrets(session: AsyncSession) -> list[tuple[int, bytes]]:
    """(id, sealed secret) of every credential, for encryption key rotation."""
    rows = await session.execute(
        select(GraphCredential.id, GraphCredential.secret_ciphertext).order_by(GraphCredential.id)
    )
    return [(credential_id, ciphertext) for credential_id, ciphertext in rows]


async def get_secret(session: AsyncSession, *, credential_id: int) -> bytes | None:
    """The sealed secret of one credential, None when it was deleted."""
    return await session.scalar(
        select(GraphCredential.secret_ciphertext).where(GraphCredential.id == credential_id)
    )


async def replace_secret(session: AsyncSession, *, credential_id: int, old: bytes, new: bytes) -> bool:
    """Compare-and-set: store `new` only if the row still holds `old`."""
    result = await session.execute(
        update(GraphCredential)
        .where(GraphCredential.id == credential_id, GraphCredential.secret_ciphertext == old)
        .values(secret_ciphertext=new)
    )
    return bool(getattr(result, "rowcount", 0))


async def sealing_key_ids(session: AsyncSession) -> dict[bytes, int]:
    """How many stored secrets each key id sealed (read from the sealed values' headers in SQL)."""
    start, length = KEY_ID_SLICE
    key_id = func.substr(GraphCredential.secret_ciphertext, start, length)
    rows = await session.execute(select(key_id, func.count()).group_by(key_id))
    return {bytes(found): int(count) for found, count in rows}


async def secrets_of(session: AsyncSession, *, credential_ids: Iterable[int]) -> list[tuple[int, bytes]]:
    """(id, sealed secret) of these credentials (those deleted meanwhile are absent)."""
    rows = await session.execute(
        select(GraphCredential.id, GraphCredential.secret_ciphertext).where(
            GraphCredential.id.in_(list(credential_ids))
        )
    )
    return [(credential_id, ciphertext) for credential_id, ciphertext in rows]


async def count_all(session: AsyncSession) -> int:
    """How many credentials exist, in every account."""
    return int(await session.scalar(select(func.count()).select_from(GraphCredential)) or 0)
