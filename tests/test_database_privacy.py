"""What the database layer must not give away: statement parameters in logged errors, and the SQLite file
to other users of the machine (issue 9, item 6)."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import httpx
import pytest
from sqlalchemy import insert

from m365connect.app import create_app
from m365connect.crypto import generate_key
from m365connect.mailboxes.models import Mailbox
from m365connect.settings import Settings
from m365connect.simulator import FakeMicrosoft
from tests.helpers import assert_generic_error
from tests.processes import Children
from tests.served import serve, service_env

ADDRESS = "hidden.person@example.com"
NAME = "Hidden Person"
USER_ID = "3f9d2c71-hidden-user-id"


async def test_a_logged_database_error_carries_no_statement_parameters(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings)

    async def fail_in_the_database() -> None:
        """A statement the database refuses (no such account), through the service's own engine."""
        async with app.state.m365connect.sessions() as session:
            row = {"account_id": 424242, "credential_id": 424242, "email": ADDRESS, "name": NAME}
            values = {**row, "microsoft_user_id": USER_ID, "spf_correct": True, "dkim_correct": True}
            await session.execute(insert(Mailbox).values(**values))
            await session.commit()

    app.add_api_route("/fail", fail_in_the_database)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as http,
    ):
        with caplog.at_level(logging.ERROR):
            response = await http.get("/fail")
    assert_generic_error(response, status=500, title="Internal server error")
    logged = caplog.text
    assert "request.failed" in logged
    assert "IntegrityError" in logged  # the error itself is logged, with its SQL ...
    # ... but none of the values bound to it. (PostgreSQL's own DETAIL line names the failing key,
    # here the account id: the server's text, not a parameter, and left to the log formatting.)
    for value in (ADDRESS, NAME, USER_ID):
        assert value not in logged


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_serve_creates_the_sqlite_files_private(tmp_path: Path, microsoft: FakeMicrosoft) -> None:
    database = tmp_path / "data" / "m365connect.db"
    database.parent.mkdir()
    env = service_env(
        database_url=f"sqlite+aiosqlite:///{database}", keys=generate_key(), microsoft=microsoft
    )
    children = Children()
    try:
        url, log = serve(children, env=env, workdir=tmp_path, name="private")
        with httpx.Client(base_url=url, timeout=10) as http:
            assert http.get("/readyz").status_code == 200, log.read_text()  # a pooled connection stays open
        companions = [database.with_name(database.name + suffix) for suffix in ("-wal", "-shm")]
        assert all(path.exists() for path in companions)  # WAL mode, while the service holds a connection
        modes = {path.name: oct(_mode(path)) for path in [database, *companions]}
    finally:
        children.stop_all()
    assert modes == {path.name: "0o600" for path in [database, *companions]}
