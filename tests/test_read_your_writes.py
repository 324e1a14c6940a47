"""A 2xx means "saved": the commit happens before the response starts.

FastAPI ends a `yield` dependency after the response by default; the session dependency ends before it
(`scope="function"`). Checked at the ASGI level: when the response starts, another connection to the
database must already see the write.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from sqlalchemy import select

from m365connect.app import create_app
from m365connect.mailboxes.models import Mailbox
from m365connect.settings import Settings
from m365connect.state import AppState
from tests.factories import BULK, create_credential


async def _call(app: Any, *, method: str, path: str, api_key: str, body: bytes, on_start: Any) -> int:
    """Run one request through the ASGI app; `on_start` runs when the response starts."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"x-api-key", api_key.encode()), (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1), "server": ("test", 80),
    }  # fmt: skip
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            await on_start()

    await app(scope, receive, send)
    return status


async def test_a_connected_mailbox_is_committed_before_the_answer_starts(
    client: httpx.AsyncClient, settings: Settings, state: AppState, api_key: str
) -> None:
    credential = await create_credential(client, api_key=api_key)
    seen_at_start: list[list[str]] = []

    async def look_from_another_connection() -> None:
        async with state.sessions() as other:
            seen_at_start.append(list((await other.scalars(select(Mailbox.email))).all()))

    body = json.dumps(
        {"credential_id": credential["credential_id"], "accounts": [{"mailbox_email": "jim@contoso.com"}]}
    )
    app = create_app(settings, state=state)
    status = await _call(
        app,
        method="POST",
        path=BULK,
        api_key=api_key,
        body=body.encode(),
        on_start=look_from_another_connection,
    )
    assert status == 201
    assert seen_at_start == [["jim@contoso.com"]]
