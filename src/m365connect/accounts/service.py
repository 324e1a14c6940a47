"""API keys: creation (shown once), listing, revocation and constant-time authentication.

A key reads `m365c_<prefix>_<secret>`. The prefix is stored in clear for lookup; the database keeps only
SHA-256 of the whole key, compared with `hmac.compare_digest`. Keys carry 256 bits of randomness, so a
fast hash is enough (no password stretching needed).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.accounts import repository
from m365connect.accounts.models import ApiKey
from m365connect.db.base import utcnow

KEY_SCHEME = "m365c"
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_PREFIX_LEN = 12
# token_urlsafe(32): 32 random bytes in unpadded base64url. A key of another shape cannot be ours, so it is
# refused without a database query (a bogus key must cost as little as possible).
_SECRET_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")
_TOUCH_INTERVAL = timedelta(minutes=1)
_DUMMY_HASH = hashlib.sha256(b"m365connect-no-such-key").digest()
ACCOUNT_NAME_MAX = 200  # accounts.name is VARCHAR(200); SQLite would not enforce it, PostgreSQL would fail
MAX_ID = 2**63 - 1  # ids are BIGINT: a larger number cannot name a row (and would overflow the driver)


class InvalidAccountName(ValueError):
    """The account name is empty or longer than the database column."""


@dataclass(frozen=True)
class NewApiKey:
    """A freshly created key: the only moment the plaintext exists."""

    key_id: int
    account_id: int
    account_name: str
    plaintext: str


def _hash(plaintext: str) -> bytes:
    return hashlib.sha256(plaintext.encode()).digest()


def _split(plaintext: str) -> str | None:
    """The lookup prefix of a key of our shape, or None (then no key of ours can match it)."""
    parts = plaintext.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_SCHEME or len(parts[1]) != _PREFIX_LEN:
        return None
    if parts[1].strip(_PREFIX_ALPHABET) or not _SECRET_SHAPE.fullmatch(parts[2]):
        return None
    return parts[1]


def account_name_of(given: str) -> str:
    """The account name as stored (trimmed); InvalidAccountName when it cannot be one."""
    name = given.strip()
    if not name:
        raise InvalidAccountName("the account name must not be empty")
    if len(name) > ACCOUNT_NAME_MAX:
        raise InvalidAccountName(
            f"the account name has {len(name)} characters; at most {ACCOUNT_NAME_MAX} are allowed"
        )
    return name


def looks_like_key(plaintext: str) -> bool:
    """Whether this has the shape of our keys (no database needed to say no)."""
    return _split(plaintext) is not None


def key_digest(plaintext: str) -> bytes:
    """SHA-256 of a presented key: what the database stores, and what the refusal cache remembers."""
    return _hash(plaintext)


async def create_api_key(session: AsyncSession, *, account_name: str) -> NewApiKey:
    """Create a key for the account, creating the account when it is new."""
    account_name = account_name_of(account_name)
    account = await repository.get_account_by_name(session, name=account_name)
    if account is None:
        account = await repository.add_account(session, name=account_name)
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(_PREFIX_LEN))
    plaintext = f"{KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
    key = await repository.add_api_key(
        session, account_id=account.id, prefix=prefix, key_hash=_hash(plaintext)
    )
    return NewApiKey(key_id=key.id, account_id=account.id, account_name=account.name, plaintext=plaintext)


async def list_api_keys(session: AsyncSession) -> Sequence[tuple[ApiKey, str]]:
    """Every key (never its plaintext) with its account name."""
    return await repository.list_api_keys(session)


async def revoke_api_key(session: AsyncSession, *, key_id: int) -> bool:
    """Revoke a key; False when it does not exist or is already revoked."""
    if not 1 <= key_id <= MAX_ID:
        return False
    return await repository.revoke_api_key(session, key_id=key_id, now=utcnow())


@dataclass(frozen=True)
class AuthenticatedKey:
    """Who a request is: the API key (its id and public lookup prefix, never the secret) and its account."""

    key_id: int
    prefix: str
    account_id: int

    @property
    def bucket(self) -> str:
        """The rate-limit bucket of this key: unique even across deployments that share one Redis."""
        return f"{self.key_id}:{self.prefix}"


async def authenticate_key(session: AsyncSession, *, presented: str | None) -> AuthenticatedKey | None:
    """The key and account this API key authenticates as, or None (missing, malformed, unknown, revoked)."""
    prefix = _split(presented) if presented else None
    key = await repository.get_api_key_by_prefix(session, prefix=prefix) if prefix else None
    expected = key.key_hash if key is not None else _DUMMY_HASH
    matches = hmac.compare_digest(expected, _hash(presented or ""))
    if key is None or not matches or key.revoked_at is not None:
        return None
    now = utcnow()
    if key.last_used_at is None or now - key.last_used_at > _TOUCH_INTERVAL:
        await repository.touch_api_key(session, key_id=key.id, now=now)
    return AuthenticatedKey(key_id=key.id, prefix=key.prefix, account_id=key.account_id)


async def authenticate(session: AsyncSession, *, presented: str | None) -> int | None:
    """The account id that this key belongs to, or None (missing, malformed, unknown or revoked)."""
    key = await authenticate_key(session, presented=presented)
    return key.account_id if key is not None else None
