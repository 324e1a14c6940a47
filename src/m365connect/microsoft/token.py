"""OAuth 2.0 client-credentials tokens from Microsoft's identity platform, async over httpx.

Why not MSAL (docs/decisions.md): it is synchronous, does network discovery in its constructor, refuses
non-HTTPS authorities, and replays a 400 from memory for 60 s. This client posts the documented form,
classifies answers through one table, retries transient failures, and caches tokens per
(tenant, client, secret fingerprint) until five minutes before expiry, with one request in flight per key.

    TokenError
    ├── TokenRejected      Microsoft refused the credential; `code` is an API.md §2.2 code
    └── TokenUnavailable   no answer after retries (5xx, 429, timeouts, network); `retry_after` seconds
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from m365connect.codes import ErrorCode
from m365connect.microsoft.client_assertion import (
    ASSERTION_TYPE,
    AssertionKeyError,
    client_assertion,
)
from m365connect.microsoft.error_codes import classify_token_error
from m365connect.microsoft.http_pools import HttpRequester
from m365connect.microsoft.observers import NoTokenObserver, TokenObserver, TokenOutcome

logger = logging.getLogger("m365connect.microsoft.token")

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
REFRESH_MARGIN_SECONDS = 300.0


class TokenError(Exception):
    """Base of token failures; never carries the secret or a token."""


class TokenRejected(TokenError):
    """Microsoft refused the credential."""

    def __init__(self, code: ErrorCode, *, status: int, error: str | None, error_codes: list[int]) -> None:
        super().__init__(f"{code} (HTTP {status}, error={error}, codes={error_codes})")
        self.code = code
        self.status = status
        self.error = error
        self.error_codes = error_codes


class TokenUnavailable(TokenError):
    """The identity platform did not give an answer we can use, after retries."""

    def __init__(self, reason: str, *, retry_after: float = 5.0) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass(frozen=True)
class ClientCredential:
    """An app registration's client credential; the secret never appears in repr.

    With a `certificate_thumbprint`, `client_secret` is the certificate's private key (PEM) and the token
    request carries a signed client assertion instead of the secret.
    """

    tenant: str
    client_id: str
    client_secret: str = field(repr=False)
    certificate_thumbprint: str | None = None

    @property
    def cache_key(self) -> tuple[str, str, str]:
        """(tenant, client, secret fingerprint): a new secret or certificate never reuses an old token."""
        material = f"{self.certificate_thumbprint or ''}\n{self.client_secret}"
        fingerprint = hashlib.sha256(material.encode()).hexdigest()
        return (self.tenant.lower(), self.client_id.lower(), fingerprint)


@dataclass(frozen=True)
class AccessToken:
    """A Graph access token and what we could read from it (diagnostics only)."""

    value: str = field(repr=False)
    expires_at: float
    roles: frozenset[str] | None
    tenant_guid: str | None


def read_claims(token: str) -> dict[str, Any]:
    """The JWT payload without verifying it (we got it straight from the STS); {} when unreadable."""
    try:
        segment = token.split(".")[1]
        payload = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (IndexError, ValueError, UnicodeDecodeError):
        return {}
    return payload if isinstance(payload, dict) else {}


Sleep = Callable[[float], Awaitable[None]]
TokenProvider = Callable[[bool], Awaitable[str]]


class TokenClient:
    """Acquires and caches app-only Graph tokens."""

    def __init__(
        self,
        *,
        http: HttpRequester,
        login_url: str,
        scope: str = GRAPH_SCOPE,
        max_attempts: int = 4,
        max_retry_after: float = 10.0,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        observer: TokenObserver | None = None,
    ) -> None:
        self._http = http
        self._login_url = login_url.rstrip("/")
        self._scope = scope
        self._max_attempts = max_attempts
        self._max_retry_after = max_retry_after
        self._sleep = sleep
        self._clock = clock
        self._cache: dict[tuple[str, str, str], AccessToken] = {}
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        self._observer: TokenObserver = observer or NoTokenObserver()

    async def acquire(self, credential: ClientCredential, *, force_refresh: bool = False) -> AccessToken:
        """A valid token from the cache, or a new one from Microsoft (one request in flight per key).

        `force_refresh` replaces the token the caller saw; concurrent callers that force a refresh of
        the same token share one new token instead of each asking Microsoft.
        """
        key = credential.cache_key
        seen = self._cache.get(key)
        if seen is not None and not force_refresh and self._fresh(seen):
            return seen
        stale = seen if force_refresh else None
        async with self._locks.setdefault(key, asyncio.Lock()):
            cached = self._cache.get(key)
            if cached is not None and cached is not stale and self._fresh(cached):
                return cached
            token = await self._request_with_retries(credential)
            self._cache[key] = token
            return token

    async def verify(self, credential: ClientCredential) -> AccessToken:
        """Prove the credential now: always asks Microsoft, then caches the new token."""
        async with self._locks.setdefault(credential.cache_key, asyncio.Lock()):
            token = await self._request_with_retries(credential)
            self._cache[credential.cache_key] = token
            return token

    def forget(self, credential: ClientCredential) -> None:
        """Drop a cached token (after Graph rejected it, or when the secret changes)."""
        self._cache.pop(credential.cache_key, None)

    def clear(self) -> None:
        """Drop every cached token."""
        self._cache.clear()

    def provider(self, credential: ClientCredential) -> TokenProvider:
        """A `force_refresh -> token` callable for the Graph client."""

        async def token(force_refresh: bool) -> str:
            return (await self.acquire(credential, force_refresh=force_refresh)).value

        return token

    def _fresh(self, token: AccessToken) -> bool:
        return self._clock() < token.expires_at - REFRESH_MARGIN_SECONDS

    async def _request_with_retries(self, credential: ClientCredential) -> AccessToken:
        delay = 0.5
        last_reason = "no attempt made"
        for attempt in range(1, self._max_attempts + 1):
            try:
                return await self._request_once(credential)
            except TokenUnavailable as exc:
                last_reason = str(exc)
                if attempt == self._max_attempts:
                    break
                # Jitter first, then the cap: the documented cap holds for the wait actually made.
                wait = min(max(exc.retry_after, delay) * random.uniform(1.0, 1.2), self._max_retry_after)
                logger.warning("token.retry", extra={"attempt": attempt, "wait": round(wait, 2)})
                await self._sleep(wait)
                delay *= 2
        raise TokenUnavailable(f"identity platform unavailable: {last_reason}")

    async def _request_once(self, credential: ClientCredential) -> AccessToken:
        url = f"{self._login_url}/{credential.tenant}/oauth2/v2.0/token"
        form = {
            "client_id": credential.client_id,
            **_proof(credential, url),
            "scope": self._scope,
            "grant_type": "client_credentials",
        }
        started = time.perf_counter()
        try:
            response = await self._http.request(
                "POST", url, data=form, headers={"Accept": "application/json"}
            )
            token = self._parse(response)
        except httpx.HTTPError as exc:
            self._observer.requested("unavailable", time.perf_counter() - started)
            raise TokenUnavailable(f"network error: {type(exc).__name__}", retry_after=0.5) from None
        except TokenError as exc:
            outcome: TokenOutcome = "rejected" if isinstance(exc, TokenRejected) else "unavailable"
            self._observer.requested(outcome, time.perf_counter() - started)
            raise
        self._observer.requested("granted", time.perf_counter() - started)
        return token

    def _parse(self, response: httpx.Response) -> AccessToken:
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if (
            response.status_code == 200
            and isinstance(body, dict)
            and isinstance(body.get("access_token"), str)
        ):
            return self._token_from(body)
        code = classify_token_error(response.status_code, body)
        if not isinstance(code, ErrorCode) or body is None:
            raise TokenUnavailable(f"HTTP {response.status_code}", retry_after=_retry_after(response))
        codes = (
            [c for c in body.get("error_codes", []) if isinstance(c, int)] if isinstance(body, dict) else []
        )
        error = body.get("error") if isinstance(body, dict) else None
        raise TokenRejected(code, status=response.status_code, error=error, error_codes=codes)

    def _token_from(self, body: dict[str, Any]) -> AccessToken:
        value = body["access_token"]
        try:
            expires_in = float(body.get("expires_in", 3599))
        except (TypeError, ValueError):
            expires_in = 3599.0
        claims = read_claims(value)
        roles = claims.get("roles")
        tid = claims.get("tid")
        return AccessToken(
            value=value,
            expires_at=self._clock() + expires_in,
            roles=frozenset(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else None,
            tenant_guid=tid if isinstance(tid, str) else None,
        )


def _proof(credential: ClientCredential, token_url: str) -> dict[str, str]:
    """The form fields that prove the credential: the secret, or a client assertion signed for this URL."""
    if credential.certificate_thumbprint is None:
        return {"client_secret": credential.client_secret}
    try:
        assertion = client_assertion(
            private_key_pem=credential.client_secret,
            thumbprint=credential.certificate_thumbprint,
            client_id=credential.client_id,
            token_url=token_url,
        )
    except AssertionKeyError:
        # Keys are checked before they are sealed, so only an altered row gets here: no request is sent.
        raise TokenRejected(ErrorCode.INVALID_CERTIFICATE, status=0, error=None, error_codes=[]) from None
    return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0
