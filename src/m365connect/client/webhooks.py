"""Typer commands `webhooks add/list/remove` that talk to a running service (API.md 6).

`add` prints the signing secret once: the service keeps it sealed and never shows it again.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from m365connect.client import report
from m365connect.client.http import DEFAULT_URL, ServiceClient
from m365connect.client.options import ApiKey, Url, reported

webhooks_app = typer.Typer(
    help="Add, list and remove the webhook subscriptions of a running service.", no_args_is_help=True
)


def webhooks_table(webhooks: list[dict[str, Any]]) -> Table:
    """Subscriptions, never their secrets."""
    table = Table("id", "url", "event types", "enabled", "description")
    for webhook in webhooks:
        table.add_row(
            str(webhook.get("id")),
            str(webhook.get("url")),
            ", ".join(webhook.get("event_types") or []) or "all",
            "yes" if webhook.get("enabled") else "no",
            str(webhook.get("description") or ""),
        )
    return table


@webhooks_app.command("add")
def webhooks_add(
    url: Annotated[str, typer.Argument(help="Where to POST events: a public https URL")],
    api_key: ApiKey,
    service_url: Url = DEFAULT_URL,
    event_type: Annotated[
        list[str] | None,
        typer.Option("--event-type", help="An event type to receive (repeat it); all types when omitted"),
    ] = None,
    description: Annotated[str | None, typer.Option("--description", help="A note for you")] = None,
) -> None:
    """Subscribe a URL to events and print its signing secret (shown this once only)."""
    out = Console()
    with reported(Console(stderr=True)), ServiceClient(url=service_url, api_key=api_key) as client:
        created = client.add_webhook(url=url, event_types=event_type, description=description)
    out.print(
        f"webhook {created['id']} added: {created['url']} "
        f"({', '.join(created.get('event_types') or []) or 'all event types'})",
        highlight=False,
        soft_wrap=True,
    )
    out.print("signing secret (shown only now; verify deliveries with it):", highlight=False)
    typer.echo(created["secret"])


@webhooks_app.command("list")
def webhooks_list(api_key: ApiKey, service_url: Url = DEFAULT_URL) -> None:
    """List the account's webhook subscriptions (never their secrets)."""
    out = Console()
    with reported(Console(stderr=True)), ServiceClient(url=service_url, api_key=api_key) as client:
        webhooks = client.list_webhooks()
    if not webhooks:
        out.print("no webhooks yet: add one with `m365connect webhooks add URL`")
        return
    report.print_table(out, webhooks_table(webhooks))


@webhooks_app.command("remove")
def webhooks_remove(
    webhook_id: Annotated[int, typer.Argument(help="The subscription's id (see webhooks list)")],
    api_key: ApiKey,
    service_url: Url = DEFAULT_URL,
) -> None:
    """Delete a subscription; nothing more is sent to its URL."""
    with reported(Console(stderr=True)), ServiceClient(url=service_url, api_key=api_key) as client:
        client.remove_webhook(webhook_id)
    Console().print(f"webhook {webhook_id} removed")
