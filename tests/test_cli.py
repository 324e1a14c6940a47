"""The `m365connect` command: API keys, encryption keys and rotation, migrations, and the two servers.

CLI commands call asyncio.run themselves, so these tests are synchronous and run their own short
asyncio.run to look at the database.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import sqlite3
import ssl
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from click.testing import Result
from sqlalchemy import select
from typer.testing import CliRunner

from m365connect.accounts.models import Account
from m365connect.accounts.service import authenticate
from m365connect.cli import app
from m365connect.credentials.models import GraphCredential
from m365connect.crypto import SecretBox, SecretBoxError, credential_secret_aad, generate_key, parse_keys
from m365connect.db.engine import create_engine, create_session_factory
from tests import scenario_values as sv
from tests.helpers import assert_generic_error
from tests.processes import START_TIMEOUT, Children, clean_env, free_port, wait_until_healthy

ROOT = Path(__file__).resolve().parent.parent
ISO_Z = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
KEY_A, KEY_B = generate_key(), generate_key()


@pytest.fixture
def database_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A SQLite file in its own folder; no M365CONNECT_* variable of the machine leaks in."""
    for name in list(os.environ):
        if name.startswith("M365CONNECT_"):
            monkeypatch.delenv(name)
    folder = tmp_path / "data"
    folder.mkdir()
    return folder / "x.db"


def url_of(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def cli(database: Path, *args: str, keys: str | None = KEY_A, exit_code: int = 0) -> Result:
    """Run the CLI in-process against this database, asserting the exit code."""
    env = {"M365CONNECT_DATABASE_URL": url_of(database), "M365CONNECT_ENCRYPTION_KEYS": keys}
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == exit_code, (result.output, result.exception)
    return result


# ----------------------------------------------------------------------------------- database peeks


async def _account_of(database: Path, presented: str) -> str | None:
    engine = create_engine(url_of(database))
    try:
        async with create_session_factory(engine)() as session:
            account_id = await authenticate(session, presented=presented)
            await session.commit()
            return (
                None
                if account_id is None
                else await session.scalar(select(Account.name).where(Account.id == account_id))
            )
    finally:
        await engine.dispose()


def account_of(database: Path, presented: str) -> str | None:
    """The account name this API key authenticates as (and records its use), or None."""
    return asyncio.run(_account_of(database, presented))


async def _add_credentials(database: Path, sealed: list[tuple[str, SecretBox]]) -> list[int]:
    engine = create_engine(url_of(database))
    try:
        async with create_session_factory(engine)() as session:
            account = Account(name="acme")
            session.add(account)
            await session.flush()
            ids: list[int] = []
            for number, (secret, box) in enumerate(sealed):
                credential = GraphCredential(
                    account_id=account.id,
                    name=f"credential {number}",
                    tenant_id=sv.CONTOSO_TENANT,
                    tenant_key=sv.CONTOSO_TENANT,
                    client_id=f"{number:08d}-0000-4000-8000-000000000000",
                    secret_ciphertext=b"",
                    secret_expires_at=datetime(2030, 1, 31, 23, 59, 59, tzinfo=UTC),
                )
                session.add(credential)
                await session.flush()
                aad = credential_secret_aad(credential.id)
                credential.secret_ciphertext = box.seal(secret, associated_data=aad)
                ids.append(credential.id)
            await session.commit()
            return ids
    finally:
        await engine.dispose()


def add_credentials(database: Path, sealed: list[tuple[str, SecretBox]]) -> list[int]:
    """Insert credential rows whose secrets are sealed with the given boxes; their ids."""
    return asyncio.run(_add_credentials(database, sealed))


async def _ciphertexts(database: Path) -> dict[int, bytes]:
    engine = create_engine(url_of(database))
    try:
        async with create_session_factory(engine)() as session:
            rows = await session.execute(select(GraphCredential.id, GraphCredential.secret_ciphertext))
            return {row_id: bytes(sealed) for row_id, sealed in rows}
    finally:
        await engine.dispose()


def ciphertexts(database: Path) -> dict[int, bytes]:
    """Every stored sealed secret, by credential id."""
    return asyncio.run(_ciphertexts(database))


def box_of(*keys: str) -> SecretBox:
    return SecretBox(parse_keys(",".join(keys)))


def created_key(result: Result) -> str:
    """The plaintext key that `api-keys create` printed on its own last line."""
    key = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"m365c_[a-z0-9]{12}_[A-Za-z0-9_-]{43}", key), result.stdout
    return key


# ------------------------------------------------------------------------------------------ api keys


def test_created_api_key_authenticates_as_its_account(database_path: Path) -> None:
    first = created_key(cli(database_path, "api-keys", "create", "--account", "acme"))
    second = created_key(cli(database_path, "api-keys", "create", "--account", " acme "))
    other = created_key(cli(database_path, "api-keys", "create", "--account", "globex"))
    assert len({first, second, other}) == 3
    assert account_of(database_path, first) == "acme"
    assert account_of(database_path, second) == "acme"  # the name is trimmed: the same account
    assert account_of(database_path, other) == "globex"
    assert account_of(database_path, first[:-1] + ("A" if first[-1] != "A" else "B")) is None


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_account_name_is_refused(database_path: Path, name: str) -> None:
    result = cli(database_path, "api-keys", "create", "--account", name, exit_code=2)
    assert "must not be empty" in result.output
    assert not database_path.exists()  # refused before anything was written


def test_list_shows_keys_but_never_the_keys_themselves(database_path: Path) -> None:
    acme = created_key(cli(database_path, "api-keys", "create", "--account", "acme"))
    globex = created_key(cli(database_path, "api-keys", "create", "--account", "globex"))
    assert account_of(database_path, acme) == "acme"  # records its last use
    cli(database_path, "api-keys", "revoke", "2")

    output = cli(database_path, "api-keys", "list").stdout
    rows = {line.split()[3]: line for line in output.splitlines() if " acme " in line or " globex " in line}
    assert set(rows) == {"acme", "globex"}
    assert rows["acme"].split()[1] == "1"
    assert rows["globex"].split()[1] == "2"
    assert len(ISO_Z.findall(rows["acme"])) == 2  # created, last used (whole, not cut short)
    assert "never" not in rows["acme"]
    assert len(ISO_Z.findall(rows["globex"])) == 2  # created, revoked
    assert "never" in rows["globex"]
    for key in (acme, globex):
        assert key not in output
        assert key.split("_", 2)[2] not in output


def test_revoke_stops_the_key_and_unknown_ids_fail(database_path: Path) -> None:
    key = created_key(cli(database_path, "api-keys", "create", "--account", "acme"))
    assert "revoked" in cli(database_path, "api-keys", "revoke", "1").output
    assert account_of(database_path, key) is None
    assert "no active API key with id 1" in cli(database_path, "api-keys", "revoke", "1", exit_code=1).output
    assert (
        "no active API key with id 999" in cli(database_path, "api-keys", "revoke", "999", exit_code=1).output
    )


# --------------------------------------------------------------------------------------- encryption


def test_generate_key_prints_a_new_base64_32_byte_key(database_path: Path) -> None:
    keys = {cli(database_path, "encryption", "generate-key", keys=None).stdout.strip() for _ in range(2)}
    assert len(keys) == 2
    for key in keys:
        assert len(base64.b64decode(key, validate=True)) == 32
        assert parse_keys(key)


def test_rotate_reseals_old_secrets_with_the_first_key(database_path: Path) -> None:
    cli(database_path, "migrate")
    old_id, current_id = add_credentials(
        database_path, [("secret sealed with A", box_of(KEY_A)), ("secret sealed with B", box_of(KEY_B))]
    )
    before = ciphertexts(database_path)
    with pytest.raises(SecretBoxError):  # an old key decrypts only while it is listed
        box_of(KEY_B).open(before[old_id], associated_data=credential_secret_aad(old_id))

    refused = cli(database_path, "encryption", "rotate", keys=KEY_B, exit_code=1)
    assert "nothing re-encrypted" in refused.output
    assert ciphertexts(database_path) == before

    result = cli(database_path, "encryption", "rotate", keys=f"{KEY_B},{KEY_A}")
    assert "re-encrypted 1 of 2 stored secrets" in result.output
    after = ciphertexts(database_path)
    assert after[old_id] != before[old_id]
    assert after[current_id] == before[current_id]
    only_b = box_of(KEY_B)
    assert only_b.open(after[old_id], associated_data=credential_secret_aad(old_id)) == "secret sealed with A"
    assert only_b.open(after[current_id], associated_data=credential_secret_aad(current_id)) == (
        "secret sealed with B"
    )

    assert "re-encrypted 0 of 2" in cli(database_path, "encryption", "rotate", keys=f"{KEY_B},{KEY_A}").output
    assert "re-encrypted 0 of 2" in cli(database_path, "encryption", "rotate", keys=KEY_B).output
    assert ciphertexts(database_path) == after


def test_without_configured_keys_a_key_file_is_created_beside_sqlite_and_reused(
    database_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert "re-encrypted 0 of 0" in cli(database_path, "encryption", "rotate", keys=None).output
    key_file = database_path.parent / "m365connect.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    content = key_file.read_text()
    file_box = SecretBox(parse_keys(content.replace("\n", ",")))
    assert list(elsewhere.iterdir()) == []

    add_credentials(database_path, [("sealed with the file key", file_box)])
    assert "re-encrypted 0 of 1" in cli(database_path, "encryption", "rotate", keys=None).output
    assert key_file.read_text() == content
    moved = cli(database_path, "encryption", "rotate", keys=f"{KEY_A},{content.strip()}")
    assert "re-encrypted 1 of 1" in moved.output  # the file key works in a configured ring too


def test_migrate_creates_the_schema(database_path: Path) -> None:
    for _ in range(2):  # idempotent
        assert "database is up to date" in cli(database_path, "migrate").output
    with sqlite3.connect(database_path) as connection:
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"accounts", "api_keys", "graph_credentials", "mailboxes", "alembic_version"} <= tables


# ---------------------------------------------------------------------------------------- processes


@pytest.fixture
def spawn() -> Iterator[Children]:
    """Children started by a test; each is stopped (and killed if it lingers) whatever happens."""
    children = Children()
    yield children
    children.stop_all()


def test_serve_answers_health_and_requires_an_api_key(tmp_path: Path, spawn: Children) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    env = clean_env(M365CONNECT_DATABASE_URL=url_of(tmp_path / "serve.db"))
    child = spawn.start(["serve", "--host", "127.0.0.1", "--port", str(port)], cwd=tmp_path, env=env, log=log)
    base = f"http://127.0.0.1:{port}"
    wait_until_healthy(child, base, log=log)
    with httpx.Client(base_url=base, timeout=2) as http:
        health = http.get("/healthz")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        ready = http.get("/readyz")
        assert (ready.status_code, ready.json()) == (
            200,
            {"status": "ok", "database": "ok", "configuration": "ok"},
        )
        unauthenticated = http.get("/rest/v2/mailboxes/microsoft/credentials")
        assert_generic_error(unauthenticated, status=401, title="Unauthorized", detail="Invalid api key")
    key_file = tmp_path / "m365connect.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    child.terminate()
    # uvicorn shuts down gracefully, then re-raises the signal it caught
    assert child.wait(timeout=10) in (0, -signal.SIGTERM), log.read_text()
    assert "Finished server process" in log.read_text()


def test_fake_microsoft_serves_tokens_over_https(tmp_path: Path, spawn: Children) -> None:
    log = tmp_path / "fake.log"
    scenario = ROOT / "examples" / "scenario.yaml"
    args = [
        "fake-microsoft",
        "--scenario",
        str(scenario),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--dns-port",
        "0",
    ]
    child = spawn.start(args, cwd=tmp_path, env=clean_env(), log=log)
    deadline = time.monotonic() + START_TIMEOUT
    while not ("base URL" in log.read_text() and "CA certificate" in log.read_text()):
        assert child.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    printed = log.read_text()
    base_url = re.search(r"base URL \(login and Graph\):\s+(https://127\.0\.0\.1:\d+)\s", printed)
    ca_path = re.search(r"CA certificate:\s+(\S+)\s", printed)
    assert base_url is not None, printed
    assert ca_path is not None, printed

    context = ssl.create_default_context(cafile=ca_path.group(1))
    with httpx.Client(base_url=base_url.group(1), verify=context, timeout=10) as http:
        response = http.post(
            f"/{sv.CONTOSO_TENANT}/oauth2/v2.0/token",
            data={
                "client_id": sv.WORKING_APP,
                "client_secret": sv.WORKING_SECRET,
                "scope": "https://graph.microsoft.com/.default",
                "grant_type": "client_credentials",
            },
        )
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "Bearer"
    assert response.json()["access_token"]

    child.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop that removes its temporary CA
    assert child.wait(timeout=10) == 0, log.read_text()
    assert not Path(ca_path.group(1)).exists()


@pytest.mark.parametrize(
    ("command", "keys", "variable"),
    [
        (["serve", "--port", "1"], "not-base64!", "M365CONNECT_ENCRYPTION_KEYS"),
        (["api-keys", "create", "--account", "acme"], KEY_A, "M365CONNECT_MAX_ACCOUNTS_PER_REQUEST"),
    ],
)
def test_bad_configuration_is_one_clear_line_not_a_traceback(
    database_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str], keys: str, variable: str
) -> None:
    monkeypatch.setenv("M365CONNECT_MAX_ACCOUNTS_PER_REQUEST", "many" if "MAX" in variable else "1000")
    result = cli(database_path, *command, keys=keys, exit_code=2)
    assert f"invalid configuration: {variable}" in result.output
    assert "Traceback" not in result.output
