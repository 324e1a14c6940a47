"""A console page while the database is unreachable is an HTML 503 page with Retry-After (the API keeps
its JSON 503): the browser shows a page an operator can read, never the API's JSON nor a 500."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from m365connect.app import create_app
from m365connect.crypto import generate_key
from m365connect.settings import Settings
from m365connect.state import open_state
from tests.factories import CREDENTIALS
from tests.helpers import assert_generic_error

# Nothing listens on port 1; SQLite cannot open a file in a directory removed after the service started.
UNREACHABLE = {
    "sqlite": "sqlite+aiosqlite:///{tmp}/gone/m365connect.db",
    "postgresql": "postgresql+asyncpg://postgres@127.0.0.1:1/m365connect",
}


@pytest.fixture
async def outage(backend: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        database_url=UNREACHABLE[backend].format(tmp=tmp_path),
        encryption_keys=generate_key(),
        database_connect_timeout=1,
    )
    (tmp_path / "gone").mkdir()
    async with open_state(settings) as state:
        shutil.rmtree(tmp_path / "gone")
        app = create_app(settings, state=state)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://m365connect.test") as http:
            yield http


async def test_a_console_page_is_an_html_503_page_and_the_api_keeps_its_json(
    outage: httpx.AsyncClient,
) -> None:
    outage.cookies.set("m365connect_console", "a-session-token-of-no-consequence", path="/console")
    for path in ("/console/sign-in", "/console/credentials", "/console/import", "/console/imports/1"):
        page = await outage.get(path)
        assert page.status_code == 503, (path, page.text[:500])
        assert page.headers["content-type"].startswith("text/html"), path
        assert "cannot reach its database" in page.text
        assert page.headers["retry-after"] == "5"
        assert "<!doctype html>" in page.text
    well_formed = "m365c_abcdefghijkl_" + "A" * 43  # the key's shape: the lookup reaches the database
    api = await outage.get(CREDENTIALS, headers={"x-api-key": well_formed})
    assert_generic_error(api, status=503, title="Service Unavailable")
    assert api.headers["content-type"].startswith("application/json")
