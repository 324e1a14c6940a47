"""`m365connect events tail`: follow the event stream by polling with the cursor (API.md 6).

The loop is a plain function over a ServiceClient, `emit`, `warn` and `sleep`, so tests drive it without a
terminal. A service that does not answer (restart, 503, 429, 5xx) is retried with a doubling delay and the
wait is said on stderr; the cursor is kept, so nothing is shown twice or skipped across the gap.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Annotated, Any

import typer

from m365connect.client.errors import ApiError, ServiceUnreachable
from m365connect.client.http import DEFAULT_URL, ServiceClient
from m365connect.client.options import ApiKey, Url

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_BACKOFF = 30.0

events_app = typer.Typer(help="Follow the account's event stream of a running service.", no_args_is_help=True)

Emit = Callable[[dict[str, Any]], None]
Warn = Callable[[str], None]


def describe(event: dict[str, Any]) -> str:
    """One readable line: id, time, type and what changed."""
    data = event.get("data") or {}
    if "email" in data:
        subject = f"mailbox {data.get('id')} {data['email']} {data.get('status', '')}".rstrip()
    elif "credential_id" in data:
        subject = f"credential {data['credential_id']} '{data.get('name', '')}' {data.get('status', '')}"
    else:
        subject = json.dumps(data, separators=(",", ":"), sort_keys=True)
    return f"{event['id']}  {event['occurred_at']}  {event['type']:<22}  {subject.rstrip()}"


def follow(
    client: ServiceClient,
    *,
    after: int,
    limit: int,
    interval: float,
    emit: Emit,
    warn: Warn,
    sleep: Callable[[float], None] = time.sleep,
    rounds: int | None = None,
) -> int:
    """Show every event after `after` as it comes, forever (or `rounds` polls); the last cursor."""
    delay, failing, done = interval, False, 0
    while rounds is None or done < rounds:
        done += 1
        try:
            page = client.list_events(after=after, limit=limit)
        except (ServiceUnreachable, ApiError) as exc:
            if isinstance(exc, ApiError) and exc.status not in TRANSIENT_STATUSES:
                raise
            delay = min(max(delay * 2, 1.0), MAX_BACKOFF) if failing else max(interval, 1.0)
            failing = True
            warn(f"{exc}; retrying in {delay:.0f} s (after event {after})")
            sleep(delay)
            continue
        if failing:
            warn(f"the service answers again; following after event {after}")
            failing, delay = False, interval
        for event in page["events"]:
            emit(event)
        after = int(page["next_after"])
        if len(page["events"]) < limit:
            sleep(interval)
    return after


@events_app.command("tail")
def events_tail(
    api_key: ApiKey,
    url: Url = DEFAULT_URL,
    after: Annotated[int, typer.Option("--after", min=0, help="Start after this event id (0: all)")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.05, help="Seconds between polls")] = 2.0,
) -> None:
    """Print the account's events as they come, oldest first, until Ctrl-C."""

    last = after

    def emit(event: dict[str, Any]) -> None:
        nonlocal last
        typer.echo(json.dumps(event, separators=(",", ":")) if as_json else describe(event))
        last = int(event["id"])

    def warn(message: str) -> None:
        typer.echo(f"events tail: {message}", err=True)

    # One attempt per request: `follow` retries itself, with its own message.
    with ServiceClient(url=url, api_key=api_key, timeout=30.0, max_attempts=1) as client:
        try:
            follow(client, after=after, limit=100, interval=interval, emit=emit, warn=warn)
        except KeyboardInterrupt:
            warn(f"stopped after event {last} (resume with --after {last})")
            raise typer.Exit(0) from None
        except ApiError as exc:
            warn(str(exc))
            raise typer.Exit(exc.exit_code) from None
