"""Options and error reporting shared by the client's commands."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console

from m365connect.client.errors import ClientError

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
def reported(console: Console) -> Iterator[None]:
    """Turn a ClientError into one line on stderr and its exit code."""
    try:
        yield
    except ClientError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
