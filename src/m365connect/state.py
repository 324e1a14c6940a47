"""Everything built once at start-up (engine, HTTP client, token client, …) and shared by requests."""

from __future__ import annotations

import contextlib
import functools
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from m365connect.api.ratelimit import FailureBudget, RateLimiter, build_failure_budget, build_rate_limiter
from m365connect.credentials.sealing import UnreadableSecrets, count_sealed_secrets
from m365connect.credentials.service import Services as CredentialServices
from m365connect.crypto import KeyFileMissing, SecretBox, load_or_create_key_file, parse_keys
from m365connect.db.engine import DatabaseTimeouts, create_engine, create_session_factory
from m365connect.db.errors import DatabaseUnreachable
from m365connect.db.transactions import Transactions
from m365connect.deliverability import DeliverabilityChecker, build_resolver
from m365connect.events.jobs import register_event_work
from m365connect.health.announcements import announce_credential
from m365connect.health.jobs import register_health_work
from m365connect.jobs.service import JobServices
from m365connect.jobs.work import register_job_work
from m365connect.mailboxes.bulk import BulkServices
from m365connect.microsoft.cloud_clients import CloudClients, Clouds
from m365connect.microsoft.clouds import DEFAULT_CLOUD, endpoint_table
from m365connect.microsoft.graph import GraphClient
from m365connect.microsoft.http_pools import HttpRequester, PooledClients
from m365connect.microsoft.pacing import Pacer
from m365connect.microsoft.token import TokenClient
from m365connect.observability.metrics import Metrics
from m365connect.pacing.pacer import DatabasePacer, PaceObserver, PacingPolicy, StorePacer
from m365connect.pacing.redis_store import RedisPaceStore
from m365connect.settings import Settings, parse_retry_delays
from m365connect.webhooks.addresses import DnsResolver, HostResolver, SystemResolver
from m365connect.webhooks.jobs import register_webhook_work
from m365connect.webhooks.sealing import count_sealed_secrets as count_webhook_secrets
from m365connect.webhooks.service import WebhookServices
from m365connect.work.engine import Work, build_work
from m365connect.work.ports import Enqueue


@dataclass(frozen=True)
class AppState:
    """The long-lived objects of one running service, each complete when built (observers included)."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    transactions: Transactions
    box: SecretBox
    http: PooledClients
    tokens: TokenClient  # the global cloud's (clouds.tokens("global"))
    graph: GraphClient  # the global cloud's
    clouds: Clouds
    checker: DeliverabilityChecker
    limiter: RateLimiter
    # One budget of failed authentications per client address, spent by refused API keys and by failed
    # console sign-ins alike (the console is no second door for guessing keys); in Redis when configured.
    failures: FailureBudget
    metrics: Metrics
    credential_services: CredentialServices
    bulk_services: BulkServices
    work: Work  # background jobs: enqueue in a transaction; `run` in serve's lifespan and in `worker`
    webhooks: WebhookServices
    jobs: JobServices  # bulk jobs (API.md 7): the bulk path, the engine, the job settings


def database_timeouts(settings: Settings, *, bound_statements: bool = True) -> DatabaseTimeouts:
    """The configured bounds on waiting for the database (migrations may leave statements unbounded)."""
    return DatabaseTimeouts(
        connect=settings.database_connect_timeout,
        statement=settings.database_statement_timeout if bound_statements else None,
        pool=settings.database_pool_timeout,
    )


async def load_secret_box(settings: Settings, session: AsyncSession) -> SecretBox:
    """The key ring from M365CONNECT_ENCRYPTION_KEYS, or from the key file.

    The key file is generated only for a database that holds no sealed secret: a missing file beside
    sealed secrets was lost or moved, and a fresh key would start a service that can open none of them.
    """
    if settings.encryption_keys:
        return SecretBox(parse_keys(settings.encryption_keys))
    path = settings.resolved_key_file
    if not path.exists():
        sealed = await count_sealed_secrets(session) + await count_webhook_secrets(session)
        if sealed:
            raise KeyFileMissing(path, sealed=sealed)
    return SecretBox(load_or_create_key_file(path))


async def _scan_secrets(sessions: async_sessionmaker[AsyncSession], box: SecretBox) -> UnreadableSecrets:
    """Try every stored secret once at start-up, so a bad one is logged and /readyz knows at once."""
    unreadable = UnreadableSecrets()
    # An unreachable (or not yet migrated) database must not stop the start: the first probe scans then.
    with contextlib.suppress(SQLAlchemyError, DatabaseUnreachable):
        async with sessions() as session:
            await unreadable.scan(session, box)
    return unreadable


def trust_context(ca_bundle: Path | None = None) -> ssl.SSLContext:
    """System trust, plus the certificates of `ca_bundle` when given. Loading the system's store costs
    tens of milliseconds of CPU, so one context is built per bundle (path, modification time and size)
    in a process and shared; a context is only read once built (docs/decisions.md)."""
    if ca_bundle is None:
        return _trust_context(None)
    stat = ca_bundle.stat()
    return _trust_context((str(ca_bundle), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _trust_context(bundle: tuple[str, int, int] | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if bundle is not None:
        context.load_verify_locations(cafile=bundle[0])
    return context


def microsoft_ssl_context(settings: Settings) -> ssl.SSLContext:
    """System trust, plus M365CONNECT_CA_BUNDLE when set (passed explicitly: env vars are not relied on)."""
    return trust_context(settings.ca_bundle)


# 16 httpx clients per PooledClients (microsoft/http_pools.py says why not one) of 16 connections each,
# all kept alive: 256 to Microsoft per PooledClients, opened as needed. With 64, an import of 50 tenants
# at 300 ms latency sent its first 1,000 lookup envelopes through them in turn and took 1.32-1.36 x the
# budget floor; with 256, 1.21-1.28 x (docs/performance.md, "Releases first, and 256 connections").
HTTP_POOLS = 16
HTTP_POOL_CONNECTIONS = 16


def build_http_client(settings: Settings) -> PooledClients:
    """The connections to the identity platform and Graph: HTTP_POOLS clients of HTTP_POOL_CONNECTIONS."""
    context = microsoft_ssl_context(settings)
    limits = httpx.Limits(
        max_connections=HTTP_POOL_CONNECTIONS, max_keepalive_connections=HTTP_POOL_CONNECTIONS
    )
    return PooledClients(
        [
            httpx.AsyncClient(
                verify=context,
                timeout=httpx.Timeout(settings.http_timeout, connect=5.0),
                limits=limits,
                headers={"User-Agent": "m365connect/0.1"},
                follow_redirects=False,
            )
            for _ in range(HTTP_POOLS)
        ]
    )


def build_pacer(settings: Settings, engine: AsyncEngine, *, observer: PaceObserver) -> StorePacer:
    """The pacer on the configured store: the database (the default), or Redis where configured."""
    policy = pacing_policy(settings)
    if settings.graph_pacing_store == "redis":
        assert settings.redis_url is not None  # settings refuse redis without a URL
        store = RedisPaceStore.from_url(settings.redis_url, timeout=settings.redis_timeout_seconds)
        return StorePacer(store, policy, observer=observer)
    return DatabasePacer(engine, policy, observer=observer)


def pacing_policy(settings: Settings) -> PacingPolicy:
    """The budgets' numbers from M365CONNECT_GRAPH_PACING_*."""
    return PacingPolicy(
        directory_units=settings.graph_pacing_directory_units,
        directory_window_seconds=settings.graph_pacing_directory_window_seconds,
        safety=settings.graph_pacing_safety,
        outlook_concurrency=settings.graph_pacing_outlook_concurrency,
        outlook_max_concurrency=settings.graph_pacing_outlook_max_concurrency,
        outlook_hold_seconds=settings.graph_pacing_outlook_hold_seconds,
        outlook_scope=settings.graph_pacing_outlook_scope,
        lease_seconds=settings.graph_pacing_lease_seconds,
        slow_threshold=settings.graph_pacing_slow_threshold,
        slow_factor=settings.graph_pacing_slow_factor,
        slow_seconds=settings.graph_pacing_slow_seconds,
        interactive_seconds=settings.graph_pacing_interactive_seconds,
        poll_seconds=settings.graph_pacing_poll_seconds,
    )


def build_clouds(
    settings: Settings,
    *,
    http: HttpRequester,
    metrics: Metrics,
    pacer: Pacer | None = None,
    interactive_http: HttpRequester | None = None,
) -> Clouds:
    """One token client and one Graph client per national cloud, sharing the pools, the observers and the
    pacer (a multi-tenant app id is one app in every cloud's budgets too: keys carry the app id).
    `interactive_http`: the pool of interactive Graph calls (GraphClient), apart from background jobs'."""
    table = endpoint_table(
        login_url=settings.login_url, graph_url=settings.graph_url, cloud_urls=settings.cloud_urls
    )
    clients = {}
    for cloud, endpoints in table.items():
        # M365CONNECT_GRAPH_SCOPE stays the global cloud's scope; another cloud's is its own resource.
        scope = settings.graph_scope if cloud == DEFAULT_CLOUD else endpoints.scope
        clients[cloud] = CloudClients(
            endpoints=endpoints,
            tokens=TokenClient(
                http=http, login_url=endpoints.login_url, scope=scope, observer=metrics.tokens
            ),
            graph=GraphClient(
                http=http,
                graph_url=endpoints.graph_url,
                max_batches_in_flight=settings.graph_batches_in_flight,
                observer=metrics.graph,
                pacer=pacer,
                interactive_http=interactive_http,
            ),
        )
    return Clouds(clients)


def build_webhook_services(settings: Settings, *, box: SecretBox, enqueue: Enqueue) -> WebhookServices:
    """DNS as the deliverability checks ask it (M365CONNECT_DNS_NAMESERVERS), else the system's resolver;
    system trust for receivers' certificates; the SSRF switch and the attempt's bound from the settings."""
    resolver: HostResolver = SystemResolver(seconds=settings.dns_timeout * 2)
    if settings.nameservers:
        resolver = DnsResolver(
            build_resolver(
                settings.nameservers, timeout=settings.dns_timeout, lifetime=settings.dns_timeout * 2
            )
        )
    return WebhookServices(
        box=box,
        resolver=resolver,
        allow_private=settings.webhook_allow_private_networks,
        ssl_context=trust_context(),
        timeout=settings.webhook_timeout,
        enqueue=enqueue,
    )


@asynccontextmanager
async def open_state(settings: Settings, *, metrics: Metrics | None = None) -> AsyncIterator[AppState]:
    """Build the state (with a registry of its own unless `metrics` is given), and close what it opened."""
    metrics = metrics or Metrics()
    # Built once: without nameservers it reads /etc/resolv.conf. Each check copies it with a fresh cache.
    resolver = build_resolver(
        settings.nameservers, timeout=settings.dns_timeout, lifetime=settings.dns_timeout * 2
    )
    engine = create_engine(settings.database_url, timeouts=database_timeouts(settings))
    http = build_http_client(settings)
    interactive_http = build_http_client(settings)
    limiter = build_rate_limiter(
        redis_url=settings.redis_url,
        per_minute=settings.rate_limit_per_minute,
        burst=settings.rate_limit_burst,
        redis_timeout=settings.redis_timeout_seconds,
    )
    failures = build_failure_budget(
        redis_url=settings.redis_url,
        per_minute=settings.auth_failures_per_minute,
        burst=settings.auth_failures_burst,
        redis_timeout=settings.redis_timeout_seconds,
    )
    sessions = create_session_factory(engine)
    pacer = build_pacer(settings, engine, observer=metrics.pacing) if settings.graph_pacing else None
    clouds = build_clouds(
        settings, http=http, metrics=metrics, pacer=pacer, interactive_http=interactive_http
    )
    tokens, graph = clouds.tokens(DEFAULT_CLOUD), clouds.graph(DEFAULT_CLOUD)
    checker = DeliverabilityChecker(resolver, observer=metrics.dns)
    work = build_work(
        settings.database_url,
        engine=engine,
        lease_seconds=settings.work_lease_seconds,
        poll_seconds=settings.work_poll_seconds,
        concurrency=settings.work_concurrency,
        connect_timeout=settings.database_connect_timeout,
        observer=metrics.work,
    )
    try:
        async with sessions() as session:
            box = await load_secret_box(settings, session)
        unreadable = await _scan_secrets(sessions, box)
        credential_services = CredentialServices(
            box=box, clouds=clouds, unreadable=unreadable, announce=announce_credential
        )
        bulk_services = BulkServices(
            credentials=credential_services,
            checker=checker,
            max_accounts=settings.max_accounts_per_request,
            deadline_seconds=settings.bulk_deadline_seconds,
            send_probe=settings.send_probe,
        )
        state = AppState(
            settings=settings,
            engine=engine,
            sessions=sessions,
            transactions=Transactions(sessions),
            box=box,
            http=http,
            tokens=tokens,
            graph=graph,
            clouds=clouds,
            checker=checker,
            limiter=limiter,
            failures=failures,
            metrics=metrics,
            credential_services=credential_services,
            bulk_services=bulk_services,
            work=work,
            webhooks=build_webhook_services(settings, box=box, enqueue=work.enqueue),
            jobs=JobServices(
                bulk=bulk_services,
                enqueue=work.enqueue,
                max_accounts=settings.max_accounts_per_job,
                chunk_size=settings.bulk_job_chunk_size,
                concurrency=settings.bulk_job_concurrency,
                wave_delays=parse_retry_delays(settings.bulk_job_wave_delays),
                live=work.live_keys,
                sweep_grace=settings.bulk_job_sweep_grace_seconds,
                sweep_limit=settings.bulk_job_sweep_limit,
                observer=metrics.jobs,
            ),
        )
        register_webhook_work(state)
        register_event_work(state)
        register_health_work(state)
        register_job_work(state)
        yield state
    finally:
        await limiter.aclose()
        await failures.aclose()
        await http.aclose()
        await interactive_http.aclose()
        if pacer is not None:
            await pacer.aclose()
        await engine.dispose()
