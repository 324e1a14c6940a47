"""Liveness and readiness probes (no API key)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from m365connect.deps import StateDep

router = APIRouter(tags=["Health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: StateDep, response: Response) -> dict[str, str]:
    """The database answers; 503 otherwise."""
    try:
        async with state.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError):
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return {"status": "unavailable", "database": "unreachable"}
    return {"status": "ok", "database": "ok"}
