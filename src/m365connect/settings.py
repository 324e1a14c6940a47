"""Service configuration: one Settings object, built at the entry point and passed down."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from m365connect.deliverability.resolver import parse_nameserver
from m365connect.microsoft.clouds import parse_cloud_urls

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./m365connect.db"
# The async drivers the package installs; any other driver fails only at the first connection, deep in
# SQLAlchemy, so it is refused here with the URL to use instead.
DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


def parse_retry_delays(text: str) -> tuple[float, ...]:
    """Comma-separated seconds (each 0 to 7 days); empty means a delivery is attempted once."""
    delays: list[float] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            seconds = float(entry)
        except ValueError:
            raise ValueError(f"{entry!r} is not a number of seconds; e.g. 5,300,1800") from None
        if not 0 <= seconds <= 7 * 86400:  # also refuses nan and inf
            raise ValueError(f"{entry!r} is outside 0 to 604800 seconds (7 days)")
        delays.append(seconds)
    return tuple(delays)


class Settings(BaseSettings):
    """Settings read from `M365CONNECT_*` environment variables (see docs/configuration.md)."""

    model_config = SettingsConfigDict(env_prefix="M365CONNECT_", extra="ignore", frozen=True)

    database_url: str = DEFAULT_DATABASE_URL
    # Bounds on waiting for the database (seconds): a silent network path must cost a 503, not minutes.
    database_connect_timeout: float = Field(default=5.0, gt=0)
    database_statement_timeout: float = Field(default=5.0, gt=0)
    database_pool_timeout: float = Field(default=5.0, gt=0)
    readiness_timeout: float = Field(default=3.0, gt=0)
    encryption_keys: str | None = Field(default=None, repr=False)
    key_file: Path | None = None
    login_url: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com"
    graph_scope: str = "https://graph.microsoft.com/.default"
    # The national clouds' URLs (JSON); the token scope stays each cloud's own Graph resource.
    cloud_urls: str | None = None
    ca_bundle: Path | None = None
    dns_nameservers: str | None = None
    dns_timeout: float = Field(default=2.0, gt=0)
    max_accounts_per_request: int = Field(default=1000, ge=1)
    max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    http_timeout: float = Field(default=20.0, gt=0)
    graph_batches_in_flight: int = Field(default=8, ge=1, le=64)
    bulk_deadline_seconds: float = Field(default=120.0, gt=0)
    # auto: a token without Mail.Send gets a per-mailbox send probe (RBAC for Applications); off: refuse.
    send_probe: Literal["auto", "off"] = "auto"
    # Events are kept at least this many days (API.md 6 promises 30), then purged in batches.
    event_retention_days: int = Field(default=30, ge=30)
    # Background work (m365connect.work): a job not heartbeaten for this long is taken over by another
    # process (the kill -9 recovery); jobs run at once per process; how often to look for due work.
    work_lease_seconds: float = Field(default=30.0, ge=1.0, le=3600.0)
    work_concurrency: int = Field(default=110, ge=2, le=500)
    work_poll_seconds: float = Field(default=1.0, gt=0, le=60.0)
    # serve runs the background work too (API.md 5); false leaves it to `m365connect worker` processes.
    serve_work: bool = True
    # Background verification (API.md 6): seconds between two checks of each credential / ACTIVE mailbox.
    health_credential_interval: int = Field(default=3600, ge=60)
    health_mailbox_interval: int = Field(default=86400, ge=60)
    # Observability
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_enabled: bool = True
    # Abuse limits
    redis_url: str | None = Field(default=None, repr=False)
    # Seconds to connect to Redis and for each answer, before the caller goes on without it.
    redis_timeout_seconds: float = Field(default=0.5, gt=0, le=30)
    rate_limit_per_minute: int = Field(default=600, ge=1)
    rate_limit_burst: int = Field(default=100, ge=1)
    max_json_depth: int = Field(default=32, ge=2)
    max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    auth_failures_per_minute: int = Field(default=60, ge=1)
    auth_failures_burst: int = Field(default=30, ge=1)
    auth_refusal_cache_seconds: float = Field(default=60.0, ge=0)
    # Slow clients (server.py): the request head, then its body, must arrive within these
    request_header_timeout: float = Field(default=10.0, gt=0)
    request_body_timeout: float = Field(default=30.0, gt=0)
    # Webhooks (API.md 6): seconds between delivery attempts (Standard Webhooks' schedule), whether
    # private addresses and plain http are allowed, and the bound on one attempt (10 s in the contract).
    webhook_retry_delays: str = "5,300,1800,7200,18000,36000,36000"
    webhook_allow_private_networks: bool = False
    webhook_timeout: float = Field(default=10.0, gt=0, le=60)
    # The operator console (/console): whether it is served, and how long a sign-in lasts without
    # activity and at most (docs/console.md).
    console_enabled: bool = True
    console_session_idle_minutes: int = Field(default=30, ge=1, le=7 * 24 * 60)
    console_session_max_hours: int = Field(default=12, ge=1, le=30 * 24)
    # Bulk jobs (API.md 7): items per job at most; items per chunk (one engine job, one transaction);
    # chunks of one job in flight at once (across all processes); seconds before each later wave of a
    # chunk's items that Microsoft throttled or could not answer (after the last, they fail with the code).
    max_accounts_per_job: int = Field(default=100_000, ge=1)
    # The body limit of POST /bulk with Prefer: respond-async only (100,000 items with display names are
    # about 9 MB of JSON); every other request keeps max_body_bytes.
    max_job_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    bulk_job_chunk_size: int = Field(default=200, ge=1, le=1000)
    bulk_job_concurrency: int = Field(default=2, ge=1, le=64)
    # Chunks of all bulk jobs running at once, across all processes (the chunk kind's own cap in the work
    # engine): below work_concurrency, so that every process keeps the rest for webhooks, health, events.
    bulk_job_slots: int = Field(default=100, ge=1, le=499)
    bulk_job_wave_delays: str = "10,60,300"
    # The sweeper of stuck jobs (jobs/sweep.py): how often it looks; how long a QUEUED or RUNNING job may
    # write no result before its next chunks' engine jobs are looked for; how often a chunk given up by
    # the engine is queued again (without a result in between) before its items fail JOB_ITEM_NOT_PROCESSED.
    bulk_job_sweep_seconds: float = Field(default=60.0, gt=0)
    bulk_job_sweep_grace_seconds: float = Field(default=600.0, ge=0)
    bulk_job_sweep_limit: int = Field(default=3, ge=0, le=100)
    # Pacing of Graph calls to Microsoft's budgets, shared by every process on the database or on Redis
    # (docs/graph-client.md "Pacing"): where the budgets live, directory resource units per window per app
    # and tenant (default: the smallest tenant tier, as the tenant's size is not known), the share of it
    # spent, Outlook calls in flight per app to start with and at most (adaptive: raised by probes,
    # halved by a 429, which holds probing for the hold seconds), or per app and mailbox (then not
    # paced), the slots' lease, the slow-down on x-ms-throttle-limit-percentage, the freshness of an
    # interactive caller's stamp, the poll interval.
    graph_pacing: bool = True
    graph_pacing_store: Literal["database", "redis"] = "database"
    graph_pacing_directory_units: int = Field(default=3_500, ge=20)
    graph_pacing_directory_window_seconds: float = Field(default=10.0, gt=0, le=3600)
    graph_pacing_safety: float = Field(default=0.8, gt=0, le=1)
    graph_pacing_outlook_concurrency: int = Field(default=4, ge=1, le=64)
    graph_pacing_outlook_max_concurrency: int = Field(default=32, ge=1, le=256)
    graph_pacing_outlook_hold_seconds: float = Field(default=3600.0, ge=0, le=86400)
    graph_pacing_outlook_scope: Literal["app", "mailbox"] = "app"
    graph_pacing_lease_seconds: float = Field(default=60.0, ge=1, le=3600)
    graph_pacing_slow_threshold: float = Field(default=0.8, gt=0, le=2)
    graph_pacing_slow_factor: float = Field(default=0.5, gt=0, le=1)
    graph_pacing_slow_seconds: float = Field(default=10.0, ge=0, le=600)
    graph_pacing_interactive_seconds: float = Field(default=0.5, gt=0, le=60)
    graph_pacing_poll_seconds: float = Field(default=0.05, ge=0.005, le=5)

    @model_validator(mode="after")
    def _pacing_is_consistent(self) -> Settings:
        if self.graph_pacing_outlook_max_concurrency < self.graph_pacing_outlook_concurrency:
            raise ValueError(
                "M365CONNECT_GRAPH_PACING_OUTLOOK_MAX_CONCURRENCY "
                f"({self.graph_pacing_outlook_max_concurrency}) must be at least "
                f"M365CONNECT_GRAPH_PACING_OUTLOOK_CONCURRENCY ({self.graph_pacing_outlook_concurrency})"
            )
        if self.graph_pacing_store == "redis" and not self.redis_url:
            raise ValueError("M365CONNECT_GRAPH_PACING_STORE=redis needs M365CONNECT_REDIS_URL")
        return self

    @model_validator(mode="after")
    def _chunks_leave_room(self) -> Settings:
        if self.bulk_job_slots >= self.work_concurrency:
            raise ValueError(
                f"M365CONNECT_BULK_JOB_SLOTS ({self.bulk_job_slots}) must be below "
                f"M365CONNECT_WORK_CONCURRENCY ({self.work_concurrency}): the rest of each process's "
                "slots are for webhook deliveries, health checks and events; lower the one or raise the other"
            )
        return self

    @model_validator(mode="after")
    def _lease_outlives_a_request(self) -> Settings:
        if self.graph_pacing_lease_seconds <= self.http_timeout:
            raise ValueError(
                "graph_pacing_lease_seconds must be longer than http_timeout: a slot whose lease ran out "
                "while its request was in flight would let another request take it"
            )
        return self

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(
                "not a database URL; e.g. sqlite+aiosqlite:///./m365connect.db or "
                "postgresql+asyncpg://user:password@host:5432/m365connect"
            ) from None
        wanted = DRIVERS.get(url.get_backend_name())
        if wanted is None:
            supported = " or ".join(f"{driver}://" for driver in DRIVERS.values())
            raise ValueError(f"unsupported database {url.get_backend_name()!r}: use {supported}")
        if url.drivername != wanted:
            raise ValueError(f"{url.drivername}:// has no installed async driver: use {wanted}://")
        return value

    @field_validator("dns_nameservers")
    @classmethod
    def _nameservers_are_addresses(cls, value: str | None) -> str | None:
        if value is None:
            return None
        entries = [entry for entry in value.split(",") if entry.strip()]
        if value.strip() and not entries:
            raise ValueError("no nameserver listed: give IP addresses (host or host:port), comma-separated")
        for entry in entries:
            parse_nameserver(entry)  # its ValueError names the entry and what is wrong
        return value

    @field_validator("webhook_retry_delays", "bulk_job_wave_delays")
    @classmethod
    def _retry_delays_are_seconds(cls, value: str) -> str:
        parse_retry_delays(value)  # its ValueError names the entry
        return value

    @field_validator("cloud_urls")
    @classmethod
    def _cloud_urls_are_json(cls, value: str | None) -> str | None:
        parse_cloud_urls(value)  # its ValueError says in one line what is wrong
        return value

    @field_validator("ca_bundle")
    @classmethod
    def _readable_ca_bundle(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        try:
            # A bare client context: parsing the file is the check; the system's store is not needed.
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(value))
        except FileNotFoundError:
            raise ValueError(f"no such file: {value}") from None
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"{value} is not a readable PEM file of CA certificates ({exc})") from None
        return value

    @field_validator("login_url", "graph_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @property
    def webhook_retry_schedule(self) -> tuple[float, ...]:
        """WEBHOOK_RETRY_DELAYS as seconds: the delay before attempt 2, 3, ... of a delivery."""
        return parse_retry_delays(self.webhook_retry_delays)

    @property
    def nameservers(self) -> list[str] | None:
        """The configured DNS servers as a list, or None for the system resolver."""
        if not self.dns_nameservers:
            return None
        return [item.strip() for item in self.dns_nameservers.split(",") if item.strip()]

    @property
    def resolved_key_file(self) -> Path:
        """Where the generated encryption key lives when no keys are configured: beside a SQLite file."""
        if self.key_file is not None:
            return self.key_file
        prefix = "sqlite+aiosqlite:///"
        if self.database_url.startswith(prefix) and ":memory:" not in self.database_url:
            return Path(self.database_url.removeprefix(prefix)).parent / "m365connect.key"
        return Path("m365connect.key")
