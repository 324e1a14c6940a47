"""Authentication of a presented API key, cheap for keys that are not ours.

Three steps, cheapest first: a key that does not have our shape is refused without touching the database;
a key refused recently is refused again from an in-process cache; only then is the key looked up (one
short transaction of its own, committed at once so that a long request never holds the key row).

Only refusals are cached. A refusal cannot turn into an acceptance (keys are 256-bit random values made
by `create_api_key`, and revocation is final), so a cached refusal is never wrong; an acceptance is never
cached, so a revoked key is refused from its very next request.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from m365connect.accounts.service import AuthenticatedKey, authenticate_key, key_digest, looks_like_key

_REFUSALS_MAX = 10_000


class RefusedKeys:
    """Digests of keys refused in the last `ttl_seconds`, at most `capacity` of them (oldest go first)."""

    def __init__(
        self,
        *,
        ttl_seconds: float,
        capacity: int = _REFUSALS_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.capacity = capacity
        self._clock = clock
        self._until: dict[bytes, float] = {}  # digest -> expiry, in insertion order

    def __contains__(self, digest: bytes) -> bool:
        expiry = self._until.get(digest)
        if expiry is None:
            return False
        if expiry <= self._clock():
            del self._until[digest]
            return False
        return True

    def add(self, digest: bytes) -> None:
        """Remember a refusal; past the capacity the oldest one is forgotten."""
        self._until.pop(digest, None)
        while len(self._until) >= self.capacity:
            del self._until[next(iter(self._until))]
        self._until[digest] = self._clock() + self.ttl_seconds


class KeyAuthenticator:
    """Who a presented API key is, or None; refusals are remembered in `refused`."""

    def __init__(self, *, refused: RefusedKeys) -> None:
        self.refused = refused

    async def authenticate(
        self, sessions: async_sessionmaker[AsyncSession], presented: str | None
    ) -> AuthenticatedKey | None:
        """The key's identity, or None (missing, malformed, unknown or revoked)."""
        if not presented or not looks_like_key(presented):
            return None
        digest = key_digest(presented)
        if digest in self.refused:
            return None
        async with sessions() as session:
            key = await authenticate_key(session, presented=presented)
            await session.commit()  # the last-use stamp; ends the transaction before the request runs
        if key is None:
            self.refused.add(digest)
        return key
