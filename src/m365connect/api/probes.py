"""Liveness and readiness probes (no API key)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy.exc import SQLAlchemyError

from m365connect.api.deps import StateDep
from m365connect.api.responses import RETRY_AFTER
from m365connect.credentials.service import secrets_without_key
from m365connect.db.ping import ping

router = APIRouter(tags=["Health"])

_READY = {"status": "ok", "database": "ok", "configuration": "ok"}
_UNREADY = {"status": "unavailable", "database": "unreachable", "configuration": "unknown"}
_MISCONFIGURED = {
    "status": "unavailable",
    "database": "ok",
    "configuration": "3 stored secrets are sealed with a key missing from M365CONNECT_ENCRYPTION_KEYS",
}


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
        async with state.sessions() as session:
            await ping(session)
            unreadable = await secrets_without_key(session, state.box)
    except (SQLAlchemyError, OSError):
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return dict(_UNREADY)
    if unreadable:
        response.status_code = 503
        response.headers["Retry-After"] = "60"
        detail = f"{unreadable} stored secrets are sealed with a key missing from M365CONNECT_ENCRYPTION_KEYS"
        return {"status": "unavailable", "database": "ok", "configuration": detail}
    return dict(_READY)
