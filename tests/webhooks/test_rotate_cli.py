"""`m365connect encryption rotate` re-seals webhook signing secrets too, and names those it cannot open."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from m365connect.accounts.models import Account
from m365connect.cli import app
from m365connect.crypto import SecretBox, generate_key, parse_keys
from m365connect.db.engine import create_engine, create_session_factory
from m365connect.webhooks import sealing
from m365connect.webhooks.models import Webhook

KEY_A, KEY_B = generate_key(), generate_key()


def rotate(database: Path, keys: str, *, exit_code: int) -> str:
    env = {"M365CONNECT_DATABASE_URL": f"sqlite+aiosqlite:///{database}", "M365CONNECT_ENCRYPTION_KEYS": keys}
    result = CliRunner().invoke(app, ["encryption", "rotate"], env=env)
    assert result.exit_code == exit_code, (result.output, result.exception)
    return result.output


async def add_webhooks(database: Path, secrets: list[str], box: SecretBox) -> list[Webhook]:
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    try:
        async with create_session_factory(engine)() as session:
            account = Account(name="acme")
            session.add(account)
            await session.flush()
            rows = []
            for secret in secrets:
                row = Webhook(account_id=account.id, url="https://93.184.215.14/", secret_ciphertext=b"")
                session.add(row)
                await session.flush()
                sealing.seal(box, row, secret)
                rows.append(row)
            await session.commit()
            return rows
    finally:
        await engine.dispose()


async def stored(database: Path) -> dict[int, Webhook]:
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    try:
        async with create_session_factory(engine)() as session:
            return {row.id: row for row in (await session.scalars(select(Webhook))).all()}
    finally:
        await engine.dispose()


async def swap_first_two(database: Path) -> None:
    """Give the first row the second row's ciphertext (sealed for another row: it cannot open)."""
    rows = await stored(database)
    first, second = sorted(rows)[:2]
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(Webhook)
                .where(Webhook.id == first)
                .values(secret_ciphertext=rows[second].secret_ciphertext)
            )
    finally:
        await engine.dispose()


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("M365CONNECT_"):
            monkeypatch.delenv(name)
    rotate(tmp_path / "x.db", KEY_A, exit_code=0)  # migrates
    return tmp_path / "x.db"


def test_rotate_reseals_webhook_secrets_and_names_those_it_cannot_open(database: Path) -> None:
    secrets = [sealing.new_secret() for _ in range(3)]
    rows = asyncio.run(add_webhooks(database, secrets, SecretBox(parse_keys(KEY_A))))
    said = rotate(database, f"{KEY_B},{KEY_A}", exit_code=0)
    assert "re-encrypted 3 of 3 webhook signing secrets with the active key" in said
    only_b = SecretBox(parse_keys(KEY_B))
    after = asyncio.run(stored(database))
    assert [sealing.open_secret(only_b, after[row.id]) for row in rows] == secrets
    assert not any(secret in said for secret in secrets)

    asyncio.run(swap_first_two(database))
    said = rotate(database, KEY_B, exit_code=1)
    assert f"webhook {rows[0].id}: not re-encrypted: does not open with its key" in said
    assert "1 webhook secrets could not be opened" in said
    assert "re-encrypted 0 of 3 webhook signing secrets" in said
