"""Only the database's own failures are answered "database unavailable" (503); the same Python exception
types raised by anything else are bugs, answered with the generic 500."""

from __future__ import annotations

import httpx
import pytest

from m365connect.app import create_app
from m365connect.settings import Settings
from m365connect.state import AppState, open_state
from tests.helpers import assert_generic_error
from tests.processes import free_port


@pytest.fixture
def backend() -> str:
    """The service's requests are the same on both backends; a refused PostgreSQL port is the outage."""
    return "sqlite"


async def _get(app: object, path: str, *, api_key: str = "m365c_x") -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://m365connect.test") as http:
        return await http.get(path, headers={"x-api-key": api_key})


@pytest.mark.parametrize("raised", [ConnectionError("redis went away"), TimeoutError()])
async def test_a_connection_error_that_is_not_the_databases_is_a_500(
    settings: Settings, state: AppState, raised: Exception
) -> None:
    app = create_app(settings, state=state)

    async def boom() -> None:
        raise raised

    app.add_api_route("/boom", boom)
    response = await _get(app, "/boom")
    assert_generic_error(
        response,
        status=500,
        title="Internal server error",
        detail="An unexpected error has occurred. Please try again later.",
    )


async def test_a_database_that_refuses_connections_is_a_503(settings: Settings, api_key: str) -> None:
    refused = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/m365connect"
    unreachable = settings.model_copy(update={"database_url": refused})
    async with open_state(unreachable) as state:
        app = create_app(unreachable, state=state)
        response = await _get(app, "/rest/v2/mailboxes/microsoft/credentials", api_key=api_key)
    assert_generic_error(
        response,
        status=503,
        title="Service Unavailable",
        detail="The database is unavailable. Nothing was saved; please retry.",
    )
    assert response.headers["retry-after"] == "5"
