"""Liveness and readiness probes (no API key)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from m365connect.api_docs import RETRY_AFTER
from m365connect.deps import StateDep

router = APIRouter(tags=["Health"])

_READY = {"status": "ok", "database": "ok"}
_UNREADY = {"status": "unavailable", "database": "unreachable"}


@router.get("/healthz", responses={200: {"content": {"application/json": {"example": {"status": "ok"}}}}})
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={
        200: {"content": {"application/json": {"example": _READY}}},
        503: {
            "description": "The database does not answer",
            "headers": RETRY_AFTER,
            "content": {"application/json": {"example": _UNREADY}},
        },
    },
)
async def readyz(state: StateDep, response: Response) -> dict[str, str]:
    """The database answers; 503 otherwise."""
    try:
        async with state.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError):
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return dict(_UNREADY)
    return dict(_READY)
