"""The `m365connect` command: thin Typer commands that build with the same factories as the app."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from m365connect.accounts import service as accounts
from m365connect.client.commands import connect, credentials_app
from m365connect.client.events import events_app
from m365connect.client.webhooks import webhooks_app
from m365connect.credentials.sealing import reseal_all
from m365connect.crypto import (
    KeyFileMissing,
    SecretBox,
    SecretBoxError,
    generate_key,
    key_file_problem,
    key_file_warning,
    parse_keys,
)
from m365connect.db.engine import create_engine, create_session_factory
from m365connect.db.errors import DatabaseUnreachable
from m365connect.db.migrate import upgrade_to_head
from m365connect.settings import Settings
from m365connect.state import database_timeouts, load_secret_box
from m365connect.webhooks.sealing import reseal_all as reseal_webhook_secrets
from m365connect.wire import iso_z

app = typer.Typer(help="m365connect: connect Microsoft 365 mailboxes in bulk.", no_args_is_help=True)
api_keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
encryption_app = typer.Typer(
    help="Manage the encryption keys of stored client secrets.", no_args_is_help=True
)
app.add_typer(api_keys_app, name="api-keys")
app.add_typer(encryption_app, name="encryption")
app.add_typer(credentials_app, name="credentials")
app.add_typer(events_app, name="events")
app.add_typer(webhooks_app, name="webhooks")
app.command("connect")(connect)
console = Console()
logger = logging.getLogger("m365connect.cli")
T = TypeVar("T")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"m365connect {package_version('m365connect')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit")
    ] = False,
) -> None:
    """m365connect: connect Microsoft 365 mailboxes in bulk."""


def _unusable(message: str) -> NoReturn:
    """The one way a configuration problem ends a command: one line on stderr, exit code 2."""
    typer.echo(message, err=True)
    raise typer.Exit(2)


def _settings() -> Settings:
    """The configuration from the environment, or a one-line error naming the bad variable (exit 2)."""
    try:
        return Settings()
    except ValidationError as exc:
        # A field's error names its variable; a check across fields (no location) names its own.
        problems = "; ".join(
            (f"M365CONNECT_{'_'.join(str(p) for p in error['loc']).upper()}: " if error["loc"] else "")
            + error["msg"].removeprefix("Value error, ")
            for error in exc.errors()
        )
        _unusable(f"invalid configuration: {problems}")


def shown_url(database_url: str) -> str:
    """The database URL as it may be printed: never its password."""
    return make_url(database_url).render_as_string(hide_password=True)


@contextmanager
def _database_errors(settings: Settings) -> Iterator[None]:
    """An unreachable or unwritable database as one line naming it (exit 2), not a driver's traceback."""
    try:
        yield
    # DatabaseUnreachable: refused, timed out, unknown host; OSError: a SQLite file that cannot be created
    except (DBAPIError, DatabaseUnreachable, OSError) as exc:
        reason = _first_line((exc.orig or exc) if isinstance(exc, DBAPIError) else exc)
        hint = (
            " (does its folder exist, and may this user write there?)"
            if settings.database_url.startswith("sqlite")
            else ""
        )
        _unusable(f"cannot use the database {shown_url(settings.database_url)}: {reason}{hint}")


def _first_line(exc: BaseException) -> str:
    """The first line of what an exception says, or its kind when it says nothing (a TimeoutError)."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _run_with_session(settings: Settings, work: Callable[..., Awaitable[T]]) -> T:
    """Migrate, open one session, run `work(session)`, commit."""

    async def main() -> T:
        # A migration may legitimately run one long statement (an index on a large table): no statement
        # bound here, but connecting and the pool stay bounded so a silent database fails the command.
        timeouts = database_timeouts(settings, bound_statements=False)
        engine = create_engine(settings.database_url, timeouts=timeouts)
        try:
            await upgrade_to_head(engine)
            async with create_session_factory(engine)() as session:
                result = await work(session)
                await session.commit()
                return result
        finally:
            await engine.dispose()

    with _database_errors(settings):
        return asyncio.run(main())


ProxyHeaders = Annotated[
    bool,
    typer.Option(
        "--proxy-headers/--no-proxy-headers",
        help="Behind a reverse proxy: take the client address and scheme from X-Forwarded-For/-Proto, "
        "only from --forwarded-allow-ips",
    ),
]
ForwardedAllowIps = Annotated[
    str, typer.Option(help="Comma-separated proxy addresses or networks trusted for X-Forwarded-*, or '*'")
]


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    proxy_headers: ProxyHeaders = False,
    forwarded_allow_ips: ForwardedAllowIps = "127.0.0.1",
) -> None:
    """Apply pending database migrations, then serve the HTTP API (log lines on stdout)."""
    from m365connect.app import create_app
    from m365connect.observability import configure_logging

    settings = _settings()
    keys = _prepare_keys(settings)  # fail fast on a bad key, before logging and the database are touched
    configure_logging(settings)
    _key_ring_or_exit(settings)  # applies pending migrations, then opens (or creates) the key ring
    logger.info(
        "service.starting",
        extra={
            "host": host,
            "port": port,
            "proxy_headers": proxy_headers,
            "database": shown_url(settings.database_url),
            "encryption_keys": keys,
        },
    )
    # Imported once the database is usable, not before: a start that fails on the database then exits as
    # quickly as before. A race in aiosqlite at exit (its worker thread outlives the loop, a traceback after
    # our one-line error) showed in 6 of 20 such failed starts with this import first, 0 of 20 here.
    from m365connect.server import build_config
    from m365connect.server import run as run_server

    config = build_config(
        create_app(settings),
        settings,
        host=host,
        port=port,
        proxy_headers=proxy_headers,
        forwarded_allow_ips=forwarded_allow_ips,
    )
    run_server(config)


@app.command()
def worker() -> None:
    """Apply pending database migrations, then run only the background work until SIGTERM or SIGINT."""
    from m365connect.observability import configure_logging
    from m365connect.work.worker import run_worker

    settings = _settings()
    _prepare_keys(settings)
    configure_logging(settings)
    _key_ring_or_exit(settings)
    with _database_errors(settings):
        asyncio.run(run_worker(settings))


def _prepare_keys(settings: Settings) -> str:
    """Check the keys before anything is written; where they come from, for the log. The key file itself
    is created later, once the database says it may be (`_key_ring_or_exit`)."""
    if settings.encryption_keys:
        try:
            parse_keys(settings.encryption_keys)
        except SecretBoxError as exc:
            _unusable(f"invalid configuration: M365CONNECT_ENCRYPTION_KEYS: {exc}")
        return "M365CONNECT_ENCRYPTION_KEYS"
    path = settings.resolved_key_file
    existed = path.exists()
    problem = key_file_problem(path)
    if problem is not None:
        _unusable(problem)
    if existed:
        return f"key file {path}"
    return f"new key generated into {path} (back it up: stored secrets cannot be read without it)"


@app.command()
def migrate() -> None:
    """Apply pending database migrations and exit."""
    _run_with_session(_settings(), _noop)
    console.print("database is up to date")


async def _noop(_session: object) -> None:
    return None


@api_keys_app.command("create")
def api_keys_create(
    account: Annotated[str, typer.Option("--account", help="Account name (created if new)")],
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="Print only the key (for KEY=$(m365connect api-keys create ...))"),
    ] = False,
) -> None:
    """Create an API key and print it once; only its hash is stored."""
    try:
        name = accounts.account_name_of(account)  # checked before anything is written
    except accounts.InvalidAccountName as exc:
        _unusable(f"invalid --account: {exc}")
    created = _run_with_session(
        _settings(), lambda session: accounts.create_api_key(session, account_name=name)
    )
    if quiet:
        typer.echo(created.plaintext)
        return
    console.print(
        f"API key {created.key_id} for account '{created.account_name}' (shown once, store it now):"
    )
    typer.echo(created.plaintext)


@api_keys_app.command("list")
def api_keys_list() -> None:
    """List API keys (never the keys themselves)."""
    rows = _run_with_session(_settings(), accounts.list_api_keys)
    table = Table("id", "account", "created", "last used", "revoked")
    for key, account_name in rows:
        table.add_row(
            str(key.id),
            account_name,
            iso_z(key.created_at) or "",
            iso_z(key.last_used_at) or "never",
            iso_z(key.revoked_at) or "",
        )
    # At its natural width: piped, rich assumes 80 columns and would cut the timestamps short with "…".
    table.width = Measurement.get(console, console.options.update_width(10_000), table).maximum
    console.print(table, crop=False)


@api_keys_app.command("revoke")
def api_keys_revoke(key_id: Annotated[int, typer.Argument(help="The key's id (see api-keys list)")]) -> None:
    """Revoke an API key; requests with it get 401 from now on."""
    revoked = _run_with_session(_settings(), lambda session: accounts.revoke_api_key(session, key_id=key_id))
    if not revoked:
        console.print(f"no active API key with id {key_id}")
        raise typer.Exit(1)
    console.print(f"API key {key_id} revoked")


@encryption_app.command("generate-key")
def encryption_generate_key() -> None:
    """Print a new random key for M365CONNECT_ENCRYPTION_KEYS (put it first to make it the active key)."""
    typer.echo(generate_key())


@encryption_app.command("rotate")
def encryption_rotate() -> None:
    """Re-encrypt every stored secret with the first key of the ring; older keys may then be removed.

    A secret that opens with no key is named (credential id and why) and left as it is; the others are
    re-encrypted all the same, and the exit code is 1.
    """
    settings = _settings()
    _prepare_keys(settings)
    box = _key_ring_or_exit(settings)
    report = _run_with_session(settings, lambda session: reseal_all(session, box))
    hooks = _run_with_session(settings, lambda session: reseal_webhook_secrets(session, box))
    console.print(f"re-encrypted {report.resealed} of {report.total} stored secrets with the active key")
    console.print(
        f"re-encrypted {hooks.resealed} of {hooks.total} webhook signing secrets with the active key"
    )
    for credential_id, reason in report.failures:
        typer.echo(f"credential {credential_id}: not re-encrypted: {reason}", err=True)
    for webhook_id, reason in hooks.failures:
        typer.echo(f"webhook {webhook_id}: not re-encrypted: {reason}", err=True)
    if report.failures:
        typer.echo(
            f"{len(report.failures)} stored secrets could not be opened: list every older key after the "
            "new one, or have these credentials' secrets sent again (PATCH) or delete them",
            err=True,
        )
    if hooks.failures:
        typer.echo(
            f"{len(hooks.failures)} webhook secrets could not be opened: list every older key after the new "
            "one, or delete these webhooks and create them again (their receivers get new secrets)",
            err=True,
        )
    if report.failures or hooks.failures:
        raise typer.Exit(1)


def _key_ring_or_exit(settings: Settings) -> SecretBox:
    """Migrate, then the key ring (a key file is only generated for a database without secrets), or one
    line naming the problem (exit 2); warns about a key file that others may read."""
    try:
        box = _run_with_session(settings, lambda session: load_secret_box(settings, session))
    except KeyFileMissing as exc:
        _unusable(f"refused: {exc}")
    except SecretBoxError as exc:
        _unusable(f"invalid configuration: M365CONNECT_KEY_FILE: {exc}")
    warning = None if settings.encryption_keys else key_file_warning(settings.resolved_key_file.absolute())
    if warning is not None:
        typer.echo(warning, err=True)
    return box


@app.command("fake-microsoft")
def fake_microsoft(
    scenario: Annotated[Path, typer.Option(help="Scenario file (YAML or JSON)", exists=True, dir_okay=False)],
    port: Annotated[int, typer.Option(help="HTTPS port (0 = any free port)")] = 8443,
    dns_port: Annotated[int, typer.Option(help="DNS port, UDP and TCP (0 = any free port)")] = 5353,
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
) -> None:
    """Serve the bundled simulation of Microsoft's identity platform, Graph and DNS for a scenario."""
    from m365connect.simulator import ScenarioError
    from m365connect.simulator.server import serve_forever

    try:
        serve_forever(scenario, host=host, port=port, dns_port=dns_port)
    except (ScenarioError, OSError) as exc:  # a scenario that does not validate, a port in use
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        typer.echo(f"fake-microsoft failed: {reason}", err=True)
        raise typer.Exit(2 if isinstance(exc, ScenarioError) else 1) from None


@app.command()
def demo(
    port: Annotated[
        int, typer.Option(help="The service's port on 127.0.0.1 (0, or when it is taken: any free port)")
    ] = 8000,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Keep serving until Ctrl-C, or exit after printing")
    ] = True,
) -> None:
    """Run the bundled Microsoft simulator and the service, connect the example mailboxes, show the
    results, then a mailbox failing and recovering as signed webhooks to a local receiver; no set-up, no
    internet."""
    from m365connect.app import create_app
    from m365connect.demo import run_demo

    try:
        run_demo(create_app=create_app, port=port, wait=wait, console=console)
    except OSError as exc:
        typer.echo(f"demo failed: {exc}", err=True)
        raise typer.Exit(1) from None


def main() -> None:
    """Entry point of the `m365connect` command."""
    app()
