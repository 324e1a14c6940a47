"""Typer commands that talk to a running service: `connect` and `credentials add/list/rotate/delete`.

Thin: parse options, call ServiceClient / connect_rows, render with `report`. Every ClientError ends as
one message on stderr and exit code 1 (service errors) or 2 (unusable input).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from m365connect.client import report
from m365connect.client.bulk import Progress as Counts
from m365connect.client.bulk import RetryPolicy, connect_rows
from m365connect.client.csv_io import InputFile, read_input, write_results
from m365connect.client.errors import ClientError, InputError
from m365connect.client.http import DEFAULT_URL, ItemResult, ServiceClient
from m365connect.codes import ErrorCode
from m365connect.explanations import DEFAULT_LOGIN_URL, Context, explain

SECRET_VARIABLE = "M365CONNECT_CLIENT_SECRET"

credentials_app = typer.Typer(
    help="Add, list, rotate and delete Microsoft Graph credentials of a running service.",
    no_args_is_help=True,
)

Url = Annotated[str, typer.Option("--url", envvar="M365CONNECT_URL", help="The service's base URL")]
ApiKey = Annotated[
    str, typer.Option("--api-key", envvar="M365CONNECT_API_KEY", help="API key (better: the env variable)")
]
LoginUrl = Annotated[
    str,
    typer.Option(
        "--login-url", envvar="M365CONNECT_LOGIN_URL", help="Identity platform, for admin-consent links"
    ),
]


@contextmanager
def _reported(console: Console) -> Iterator[None]:
    """Turn a ClientError into one line on stderr and its exit code."""
    try:
        yield
    except ClientError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None


def _secret(prompt: str) -> str:
    """The client secret from M365CONNECT_CLIENT_SECRET, else a hidden prompt; never an argument."""
    secret = os.environ.get(SECRET_VARIABLE) or typer.prompt(prompt, hide_input=True)
    return str(secret).strip()


def _print_credential(console: Console, credential: dict[str, Any], verb: str, login_url: str) -> None:
    console.print(
        f"credential {credential['credential_id']} {verb}: '{credential['name']}', "
        f"status {credential['status']}, "
        f"permissions {', '.join(credential['granted_permissions']) or 'none'}",
        highlight=False,
        soft_wrap=True,
    )
    _print_missing(console, [credential], login_url)


def _print_missing(console: Console, credentials: list[dict[str, Any]], login_url: str) -> None:
    for credential in credentials:
        if credential.get("missing_permissions"):
            context = Context(
                tenant_id=credential["tenant_id"],
                client_id=credential["client_id"],
                credential_id=credential["credential_id"],
                login_url=login_url,
                cloud=credential.get("cloud", "global"),
            )
            console.print(
                f"[yellow]credential {credential['credential_id']} lacks "
                f"{', '.join(credential['missing_permissions'])}:[/yellow] "
                + explain(ErrorCode.MISSING_PERMISSIONS, context),
                highlight=False,
                soft_wrap=True,
            )


@credentials_app.command("add")
def credentials_add(
    tenant_id: Annotated[str, typer.Option("--tenant-id", help="Directory (tenant) ID or verified domain")],
    client_id: Annotated[str, typer.Option("--client-id", help="Application (client) ID")],
    secret_expires_at: Annotated[
        str, typer.Option("--secret-expires-at", help="The secret's expiry, e.g. 2027-11-28")
    ],
    api_key: ApiKey,
    url: Url = DEFAULT_URL,
    name: Annotated[str | None, typer.Option("--name", help="A name for the credential")] = None,
    login_url: LoginUrl = DEFAULT_LOGIN_URL,
) -> None:
    """Verify an app registration with Microsoft and store it (secret: hidden prompt or
    M365CONNECT_CLIENT_SECRET)."""
    out, err = Console(), Console(stderr=True)
    secret = _secret("Client secret (its value)")
    with _reported(err), ServiceClient(url=url, api_key=api_key) as client:
        created = client.add_credential(
            tenant_id=tenant_id,
            client_id=client_id,
            client_secret=secret,
            secret_expires_at=secret_expires_at,
            name=name,
        )
    _print_credential(out, created, "saved", login_url)


@credentials_app.command("list")
def credentials_list(
    api_key: ApiKey, url: Url = DEFAULT_URL, login_url: LoginUrl = DEFAULT_LOGIN_URL
) -> None:
    """List the account's credentials (never their secrets)."""
    out, err = Console(), Console(stderr=True)
    with _reported(err), ServiceClient(url=url, api_key=api_key) as client:
        credentials = client.list_credentials()
    if not credentials:
        out.print("no credentials yet: add one with `m365connect credentials add`")
        return
    report.print_table(out, report.credentials_table(credentials))
    _print_missing(out, credentials, login_url)


@credentials_app.command("rotate")
def credentials_rotate(
    credential_id: Annotated[int, typer.Argument(help="The credential's id (see credentials list)")],
    secret_expires_at: Annotated[
        str, typer.Option("--secret-expires-at", help="The new secret's expiry, e.g. 2027-11-28")
    ],
    api_key: ApiKey,
    url: Url = DEFAULT_URL,
    login_url: LoginUrl = DEFAULT_LOGIN_URL,
) -> None:
    """Replace a credential's secret; the new one is verified first, the old one stays on failure."""
    out, err = Console(), Console(stderr=True)
    secret = _secret("New client secret (its value)")
    with _reported(err), ServiceClient(url=url, api_key=api_key) as client:
        rotated = client.rotate_credential(
            credential_id, client_secret=secret, secret_expires_at=secret_expires_at
        )
    _print_credential(out, rotated, "rotated", login_url)


@credentials_app.command("delete")
def credentials_delete(
    credential_id: Annotated[int, typer.Argument(help="The credential's id (see credentials list)")],
    api_key: ApiKey,
    url: Url = DEFAULT_URL,
) -> None:
    """Delete a credential that no connected mailbox uses."""
    with _reported(Console(stderr=True)), ServiceClient(url=url, api_key=api_key) as client:
        client.delete_credential(credential_id)
    Console().print(f"credential {credential_id} deleted")


def connect(
    csv_file: Annotated[Path, typer.Argument(help="CSV: mailbox_email[,display_name] (header row optional)")],
    api_key: ApiKey,
    url: Url = DEFAULT_URL,
    credential_id: Annotated[
        int | None, typer.Option("--credential-id", help="Needed when the account has several credentials")
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Mailboxes per request (the server's limit)")
    ] = 1000,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Results CSV (default: FILE.results.csv)")
    ] = None,
    max_attempts: Annotated[
        int, typer.Option("--max-attempts", min=1, help="Attempts per mailbox on MICROSOFT_* failures")
    ] = 4,
    retry_delay: Annotated[
        float, typer.Option("--retry-delay", min=0.0, help="Seconds before the first retry (then doubled)")
    ] = 2.0,
    login_url: LoginUrl = DEFAULT_LOGIN_URL,
) -> None:
    """Connect every mailbox of a CSV file through a running service; write one result per row."""
    out, err = Console(), Console(stderr=True)
    with _reported(err):
        source = read_input(csv_file)
        target = output or csv_file.with_name(f"{csv_file.stem}.results.csv")
        if target.resolve() == csv_file.resolve():
            raise InputError("--output must not be the input file")
        counts = Counts(total=len(source.rows))
        with ServiceClient(url=url, api_key=api_key, on_wait=_waiting(err)) as client:
            results = _with_progress(
                out,
                counts,
                lambda on_progress: connect_rows(
                    client,
                    source.rows,
                    credential_id=credential_id,
                    batch_size=batch_size,
                    retry=RetryPolicy(max_attempts=max_attempts, first_delay=retry_delay),
                    progress=counts,
                    on_progress=on_progress,
                ),
            )
            base = _credential_context(client, credential_id, results, login_url)
        _write(target, source, results, base)
    report.print_table(out, report.summary_table(results))
    how = report.fixes(results, base)
    if how is not None:
        out.print(how, soft_wrap=True, highlight=False)
    out.print(
        f"{counts.connected} connected, {counts.failed} failed, {counts.retried} retried; "
        f"results in {target}",
        highlight=False,
        soft_wrap=True,
    )


def _waiting(err: Console) -> Callable[[int, float], None]:
    def on_wait(status: int, seconds: float) -> None:
        err.print(f"service answered {status}: retrying in {seconds:g} s", highlight=False)

    return on_wait


def _with_progress(
    console: Console, counts: Counts, work: Callable[[Callable[[Counts], None]], list[ItemResult]]
) -> list[ItemResult]:
    columns = (
        TextColumn("connecting"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("connect", total=counts.total, counts="")

        def on_progress(now: Counts) -> None:
            label = f"connected {now.connected} · failed {now.failed} · retried {now.retried}"
            bar.update(task, completed=now.done, counts=label)

        try:
            return work(on_progress)
        except ClientError:
            if counts.connected:
                console.print(
                    f"{counts.connected} mailboxes were connected before the error; "
                    "running the same command again is safe (re-adding is idempotent)"
                )
            raise


def _credential_context(
    client: ServiceClient, credential_id: int | None, results: list[ItemResult], login_url: str
) -> Context:
    """Tenant and client of the credential used, when a failure's explanation needs them."""
    needs = {ErrorCode.MISSING_PERMISSIONS, ErrorCode.MAILBOX_ACCESS_DENIED}
    if not any(item.error in needs for item in results):
        return Context(login_url=login_url)
    credentials = client.list_credentials()
    if credential_id is not None:
        used = [c for c in credentials if c["credential_id"] == credential_id]
    else:
        used = [c for c in credentials if c["status"] == "VALID"]
    if len(used) != 1:
        return Context(login_url=login_url)
    return Context(
        tenant_id=used[0]["tenant_id"],
        client_id=used[0]["client_id"],
        credential_id=used[0]["credential_id"],
        login_url=login_url,
        cloud=used[0].get("cloud", "global"),
    )


def _write(target: Path, source: InputFile, results: list[ItemResult], base: Context) -> None:
    rows = []
    for row, item in zip(source.rows, results, strict=True):
        rows.append(
            [
                row.mailbox_email,
                row.display_name or "",
                "true" if item.success else "false",
                "" if item.id is None else str(item.id),
                item.error or "",
                "" if item.error is None else explain(item.error, report.item_context(item, base)),
                item.primary_email or "",
                _flag(item.spf_correct),
                _flag(item.dkim_correct),
                _flag(item.dmarc_correct),
                item.spf_reason or "",
                item.dkim_reason or "",
                item.dmarc_reason or "",
                item.mailbox_type or "",
            ]
        )
    write_results(target, rows, delimiter=source.delimiter, bom=source.bom)


def _flag(value: bool | None) -> str:
    return "" if value is None else str(value).lower()
