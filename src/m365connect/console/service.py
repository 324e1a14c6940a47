"""Console sessions: opened with an API key, found again by the cookie's token, ended by sign-out, idle
time, the absolute expiry or the revocation of the key that opened them.

The token is 32 random bytes; the table keeps only its SHA-256, so a copy of the database opens no
session. The CSRF token of a session is an HMAC of the session token: per session, never stored, and
useless without the cookie it is derived from.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.accounts.service import AuthenticatedKey
from m365connect.console import repository
from m365connect.console.models import ConsoleSession
from m365connect.db.base import utcnow

_CSRF_LABEL = b"m365connect-console-csrf"
# Activity is written at most this often: a page view does not need a write per request.
_TOUCH_INTERVAL = timedelta(seconds=30)
_MAX_TOKEN_LENGTH = 128


@dataclass(frozen=True)
class SessionPolicy:
    """How long a session lives: without activity (`idle`), and at most (`absolute`)."""

    idle: timedelta
    absolute: timedelta


@dataclass(frozen=True)
class Signed:
    """A live session: the account it sees and its CSRF token."""

    session_id: int
    account_id: int
    api_key_id: int
    csrf_token: str


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_random_token() -> str:
    """32 random bytes, URL-safe base64 (for session tokens and the sign-in form's CSRF cookie)."""
    return secrets.token_urlsafe(32)


def csrf_token_of(token: str) -> str:
    """The CSRF token of a session (or of the sign-in form's cookie)."""
    mac = hmac.new(token.encode(), _CSRF_LABEL, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def csrf_matches(token: str | None, presented: str | None) -> bool:
    """Whether `presented` is the CSRF token of `token`, compared in constant time."""
    if not token or not presented:
        return False
    return hmac.compare_digest(csrf_token_of(token).encode(), presented.encode())


async def open_session(
    session: AsyncSession, *, key: AuthenticatedKey, policy: SessionPolicy, now: datetime | None = None
) -> str:
    """A new session for this key's account; returns the token for the cookie (shown nowhere else).
    Expired sessions are pruned here, so the table holds only live ones and those of the last moments."""
    now = now or utcnow()
    await repository.remove_expired(session, now=now, idle_since=now - policy.idle)
    token = new_random_token()
    row = ConsoleSession(
        token_digest=_digest(token),
        account_id=key.account_id,
        api_key_id=key.key_id,
        created_at=now,
        last_seen_at=now,
        expires_at=now + policy.absolute,
    )
    await repository.add(session, row=row)
    return token


async def resume(
    session: AsyncSession, *, token: str | None, policy: SessionPolicy, now: datetime | None = None
) -> Signed | None:
    """The live session of this token, or None (unknown, expired, idle too long, its key revoked); an
    ended session is deleted on the way."""
    if not token or len(token) > _MAX_TOKEN_LENGTH:
        return None
    now = now or utcnow()
    digest = _digest(token)
    found = await repository.find(session, digest=digest)
    if found is None:
        return None
    row, revoked_at = found
    if revoked_at is not None or row.expires_at <= now or row.last_seen_at + policy.idle <= now:
        await repository.remove(session, digest=digest)
        return None
    if now - row.last_seen_at >= _TOUCH_INTERVAL:
        await repository.touch(session, session_id=row.id, now=now)
    return Signed(
        session_id=row.id,
        account_id=row.account_id,
        api_key_id=row.api_key_id,
        csrf_token=csrf_token_of(token),
    )


async def close(session: AsyncSession, *, token: str | None) -> None:
    """Sign out: the session ends at once (its cookie is then worth nothing)."""
    if token and len(token) <= _MAX_TOKEN_LENGTH:
        await repository.remove(session, digest=_digest(token))


async def allow_reveal(session: AsyncSession, *, signed: Signed, webhook_id: int) -> None:
    """This session may see the secret of the subscription it just added, once (take_reveal)."""
    await repository.set_reveal(session, session_id=signed.session_id, webhook_id=webhook_id)


async def take_reveal(session: AsyncSession, *, signed: Signed, webhook_id: int) -> bool:
    """Whether this session may see that secret now; True at most once per allow_reveal."""
    return await repository.take_reveal(session, session_id=signed.session_id, webhook_id=webhook_id)
