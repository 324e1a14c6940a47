"""Liveness and readiness probes (no API key)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from fastapi import APIRouter, Response
from sqlalchemy.exc import SQLAlchemyError

from m365connect.api.deps import StateDep
from m365connect.api.responses import RETRY_AFTER
from m365connect.credentials.sealing import secrets_without_key
from m365connect.db.errors import DatabaseUnreachable
from m365connect.db.ping import ping
from m365connect.state import AppState

T = TypeVar("T")

router = APIRouter(tags=["Health"])

_READY = {"status": "ok", "database": "ok", "configuration": "ok"}
_UNREADY = {"status": "unavailable", "database": "unreachable", "configuration": "unknown"}
_WITHOUT_KEY = "stored secrets are sealed with a key missing from M365CONNECT_ENCRYPTION_KEYS"
# A key of the ring, yet no opening: copied from another row or altered; the log names the credentials.
_NOT_OPENING = "stored secrets do not open with the configured keys (see the log)"
_MISCONFIGURED = {"status": "unavailable", "database": "ok", "configuration": f"3 {_WITHOUT_KEY}"}


@router.get("/healthz", responses={200: {"content": {"application/json": {"example": {"status": "ok"}}}}})
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={
        200: {"content": {"application/json": {"example": _READY}}},
        503: {
            "description": "The database does not answer, or stored secrets cannot be decrypted",
            "headers": RETRY_AFTER,
            "content": {
                "application/json": {
                    "examples": {
                        "database": {"value": _UNREADY},
                        "configuration": {"value": _MISCONFIGURED},
                    }
                }
            },
        },
    },
)
async def readyz(state: StateDep, response: Response) -> dict[str, str]:
    """Ready when the database answers and every stored secret can be decrypted with the configured keys."""
    try:
        without_key, not_opening = await _within(state.settings.readiness_timeout, _check_database(state))
    except (SQLAlchemyError, DatabaseUnreachable, TimeoutError):  # TimeoutError: the probe's own deadline
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return dict(_UNREADY)
    problems = []
    if without_key:
        problems.append(f"{without_key} {_WITHOUT_KEY}")
    if not_opening:
        problems.append(f"{not_opening} {_NOT_OPENING}")
    if problems:
        response.status_code = 503
        response.headers["Retry-After"] = "60"
        return {"status": "unavailable", "database": "ok", "configuration": "; ".join(problems)}
    return dict(_READY)


async def _check_database(state: AppState) -> tuple[int, int]:
    """The database answers; how many stored secrets no configured key opens, and how many do not open."""
    async with state.sessions() as session:
        await ping(session)
        without_key = await secrets_without_key(session, state.box)
        return without_key, await state.credential_services.unreadable.count(session, state.box)


# Checks given up on by `_within`, kept referenced until their clean-up ends (asyncio holds tasks weakly).
_abandoned: set[asyncio.Task[Any]] = set()


async def _within(seconds: float, check: Coroutine[Any, Any, T]) -> T:
    """The check's result, or TimeoutError after `seconds` without waiting for the check to wind down.

    A plain `asyncio.timeout` would cancel the check and then wait while it hands its connection back,
    and on a silent network path that rollback waits for the driver's own timeout: the probe would hang
    exactly when it matters. The abandoned check is cancelled and finishes on its own, bounded by the
    database timeouts.
    """
    task = asyncio.create_task(check)
    try:
        await asyncio.wait({task}, timeout=seconds)
    finally:  # also when the probe itself is cancelled (the client went away)
        if not task.done():
            task.cancel()
            _abandoned.add(task)
            task.add_done_callback(_forget)
    if not task.done():
        raise TimeoutError
    return task.result()


def _forget(task: asyncio.Task[Any]) -> None:
    _abandoned.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved
