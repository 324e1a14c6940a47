"""Everything built once at start-up (engine, HTTP client, token client, …) and shared by requests."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import dns.asyncresolver
import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from m365connect.api.ratelimit import RateLimiter, build_rate_limiter
from m365connect.credentials.service import Services as CredentialServices
from m365connect.crypto import SecretBox, load_or_create_key_file, parse_keys
from m365connect.db.engine import create_engine, create_session_factory
from m365connect.deliverability import DeliverabilityChecker, build_resolver
from m365connect.mailboxes.bulk import BulkServices
from m365connect.microsoft.graph import GraphClient
from m365connect.microsoft.token import TokenClient
from m365connect.settings import Settings


@dataclass(frozen=True)
class AppState:
    """The long-lived objects of one running service."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    box: SecretBox
    http: httpx.AsyncClient
    tokens: TokenClient
    graph: GraphClient
    resolver: dns.asyncresolver.Resolver
    limiter: RateLimiter

    @property
    def credential_services(self) -> CredentialServices:
        """What the credential service needs."""
        return CredentialServices(box=self.box, tokens=self.tokens)

    @property
    def bulk_services(self) -> BulkServices:
        """What a bulk connection needs; DNS answers are cached per request (a fixed record shows at once)."""
        resolver = build_resolver(
            self.settings.nameservers,
            timeout=self.settings.dns_timeout,
            lifetime=self.settings.dns_timeout * 2,
        )
        return BulkServices(
            credentials=self.credential_services,
            graph=self.graph,
            checker=DeliverabilityChecker(resolver),
            max_accounts=self.settings.max_accounts_per_request,
            deadline_seconds=self.settings.bulk_deadline_seconds,
        )


def build_secret_box(settings: Settings) -> SecretBox:
    """The key ring from M365CONNECT_ENCRYPTION_KEYS, or from the generated key file."""
    if settings.encryption_keys:
        return SecretBox(parse_keys(settings.encryption_keys))
    return SecretBox(load_or_create_key_file(settings.resolved_key_file))


def microsoft_ssl_context(settings: Settings) -> ssl.SSLContext:
    """System trust, plus M365CONNECT_CA_BUNDLE when set (passed explicitly: env vars are not relied on)."""
    context = ssl.create_default_context()
    if settings.ca_bundle is not None:
        context.load_verify_locations(cafile=str(settings.ca_bundle))
    return context


def build_http_client(settings: Settings) -> httpx.AsyncClient:
    """One pooled client for the identity platform and Graph."""
    return httpx.AsyncClient(
        verify=microsoft_ssl_context(settings),
        timeout=httpx.Timeout(settings.http_timeout, connect=5.0),
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        headers={"User-Agent": "m365connect/0.1"},
        follow_redirects=False,
    )


@asynccontextmanager
async def open_state(settings: Settings) -> AsyncIterator[AppState]:
    """Build the state, and close what it opened on exit."""
    # Built once: without nameservers it reads /etc/resolv.conf, which must not happen per request.
    resolver = build_resolver(
        settings.nameservers, timeout=settings.dns_timeout, lifetime=settings.dns_timeout * 2
    )
    engine = create_engine(settings.database_url)
    http = build_http_client(settings)
    limiter = build_rate_limiter(
        redis_url=settings.redis_url,
        per_minute=settings.rate_limit_per_minute,
        burst=settings.rate_limit_burst,
    )
    try:
        yield AppState(
            resolver=resolver,
            settings=settings,
            engine=engine,
            sessions=create_session_factory(engine),
            box=build_secret_box(settings),
            http=http,
            tokens=TokenClient(http=http, login_url=settings.login_url, scope=settings.graph_scope),
            graph=GraphClient(
                http=http,
                graph_url=settings.graph_url,
                max_batches_in_flight=settings.graph_batches_in_flight,
            ),
            limiter=limiter,
        )
    finally:
        await limiter.aclose()
        await http.aclose()
        await engine.dispose()
