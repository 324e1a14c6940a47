"""Shared pieces of the health tests: the event tape, connected mailboxes, stored rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import select, update

from m365connect.credentials.models import GraphCredential
from m365connect.events.models import Event
from m365connect.mailboxes.models import Mailbox
from m365connect.state import AppState
from tests.factories import bulk


@dataclass
class Tape:
    """The events table read as a tape: `new()` answers the events written since its last call."""

    state: AppState
    seen: int = 0
    all: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def new(self) -> list[tuple[str, dict[str, Any]]]:
        async with self.state.sessions() as session:
            rows = (await session.scalars(select(Event).where(Event.id > self.seen).order_by(Event.id))).all()
        if rows:
            self.seen = rows[-1].id
        found = [(row.type, row.data) for row in rows]
        self.all += found
        return found

    async def types(self) -> list[tuple[str, Any]]:
        """The new events as (type, id of the object)."""
        return [(kind, data.get("id", data.get("credential_id"))) for kind, data in await self.new()]


async def connect(
    client: httpx.AsyncClient, api_key: str, emails: list[str], credential_id: int
) -> dict[str, int]:
    """Connect these mailboxes through the API; {email: id}."""
    response = await bulk(client, api_key=api_key, emails=emails, credential_id=credential_id)
    assert response.status_code == 201, response.text
    return {item["email"]: item["id"] for item in response.json()}


async def mailbox_row(state: AppState, mailbox_id: int) -> Mailbox:
    async with state.sessions() as session:
        row = await session.get(Mailbox, mailbox_id)
        assert row is not None
        return row


async def credential_row(state: AppState, credential_id: int) -> GraphCredential:
    async with state.sessions() as session:
        row = await session.get(GraphCredential, credential_id)
        assert row is not None
        return row


async def set_expiry(state: AppState, credential_id: int, when: datetime) -> None:
    """The stated expiry of a credential, written straight to the database."""
    async with state.sessions() as session:
        await session.execute(
            update(GraphCredential).where(GraphCredential.id == credential_id).values(secret_expires_at=when)
        )
        await session.commit()
