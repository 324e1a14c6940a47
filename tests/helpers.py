"""Plain keyword-only helpers shared by the tests."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import httpx
from sqlalchemy import select

from m365connect.mailboxes.models import Mailbox
from m365connect.state import AppState

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


def assert_generic_error(
    response: httpx.Response, *, status: int, title: str, detail: str | None = None
) -> None:
    """The response is Woodpecker's generic error body with this status and title."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"title", "status", "detail", "timestamp"}
    assert body["title"] == title
    assert body["status"] == status
    if detail is not None:
        assert body["detail"] == detail
    assert TIMESTAMP.match(body["timestamp"]), body["timestamp"]


def assert_code(response: httpx.Response, code: str) -> None:
    """The response is a 422 with exactly {"message": code}."""
    assert response.status_code == 422, response.text
    assert response.json() == {"message": code}


def headers(api_key: str) -> dict[str, str]:
    """Request headers carrying the API key."""
    return {"x-api-key": api_key}


def ids_per_address(requests: Sequence[list[str]], responses: Sequence[httpx.Response]) -> dict[str, int]:
    """For concurrent bulk requests: every answer is a 201 in request order, and each address got one id."""
    ids: dict[str, set[int]] = {}
    for emails, response in zip(requests, responses, strict=True):
        assert response.status_code == 201, response.text
        results: list[dict[str, Any]] = response.json()
        assert [item["email"] for item in results] == emails
        for item in results:
            ids.setdefault(item["email"], set()).add(item["id"])
    assert all(len(found) == 1 for found in ids.values()), ids
    return {email: found.pop() for email, found in ids.items()}


async def active_mailboxes(state: AppState) -> list[Mailbox]:
    """Every ACTIVE mailbox row, read through a fresh session."""
    async with state.sessions() as session:
        return list((await session.scalars(select(Mailbox).where(Mailbox.status == "ACTIVE"))).all())
