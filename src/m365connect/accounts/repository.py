"""SQL for accounts and API keys."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.accounts.models import Account, ApiKey


async def get_account_by_name(session: AsyncSession, *, name: str) -> Account | None:
    """The account with this name, if any."""
    return await session.scalar(select(Account).where(Account.name == name))


async def add_account(session: AsyncSession, *, name: str) -> Account:
    """Insert an account."""
    account = Account(name=name)
    session.add(account)
    await session.flush()
    return account


async def add_api_key(session: AsyncSession, *, account_id: int, prefix: str, key_hash: bytes) -> ApiKey:
    """Insert an API key record (hash only)."""
    key = ApiKey(account_id=account_id, prefix=prefix, key_hash=key_hash)
    session.add(key)
    await session.flush()
    return key


async def get_api_key_by_prefix(session: AsyncSession, *, prefix: str) -> ApiKey | None:
    """The key record with this lookup prefix, revoked or not."""
    return await session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))


async def list_api_keys(session: AsyncSession) -> Sequence[tuple[ApiKey, str]]:
    """Every key with its account name, oldest first."""
    rows = await session.execute(
        select(ApiKey, Account.name).join(Account, Account.id == ApiKey.account_id).order_by(ApiKey.id)
    )
    return [(key, name) for key, name in rows]


async def revoke_api_key(session: AsyncSession, *, key_id: int, now: datetime) -> bool:
    """Mark a key revoked; False when there is no such active key."""
    result = await session.execute(
        update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).values(revoked_at=now)
    )
    return bool(getattr(result, "rowcount", 0))


async def touch_api_key(session: AsyncSession, *, key_id: int, now: datetime) -> None:
    """Record that the key was used."""
    await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))
