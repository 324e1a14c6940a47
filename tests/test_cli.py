"""The `m365connect` command: API keys, encryption keys and rotation, migrations, and the two servers.

CLI commands call asyncio.run themselves, so these tests are synchronous and run their own short
asyncio.run to look at the database.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import socket
import sqlite3
import ssl
import stat
import subprocess
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest
from click.testing import Result
from sqlalchemy import select
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from m365connect.accounts.models import Account
from m365connect.accounts.service import authenticate
from m365connect.cli import app
from m365connect.credentials.models import GraphCredential
from m365connect.crypto import SecretBox, SecretBoxError, credential_secret_aad, generate_key, parse_keys
from m365connect.db.engine import create_engine, create_session_factory
from tests import scenario_values as sv
from tests.factories import insert_sealed_credentials
from tests.helpers import assert_generic_error
from tests.processes import EXECUTABLE, START_TIMEOUT, Children, clean_env, free_port, wait_until_healthy

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


async def _account_of(url: str, presented: str) -> str | None:
    engine = create_engine(url)
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
    return asyncio.run(_account_of(url_of(database), presented))


def account_of_url(url: str, presented: str) -> str | None:
    """The account name this API key authenticates as in the database at this URL, or None."""
    return asyncio.run(_account_of(url, presented))


def add_credentials(database: Path, sealed: list[tuple[str, SecretBox]]) -> list[int]:
    """Insert credential rows whose secrets are sealed with the given boxes; their ids."""
    return asyncio.run(insert_sealed_credentials(url_of(database), list(sealed)))


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
    assert f"credential {old_id}: not re-encrypted: sealed with key id" in refused.output
    assert "not in the key ring" in refused.output
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


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_fake_microsoft_serves_tokens_over_https(
    tmp_path: Path, spawn: Children, stop_signal: signal.Signals
) -> None:
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

    # Ctrl-C, or SIGTERM (kill, systemd, docker stop): a clean stop that removes its temporary folder,
    # which holds the CA's and the server's private keys.
    assert any(Path(ca_path.group(1)).parent.glob("*key*")), list(Path(ca_path.group(1)).parent.iterdir())
    child.send_signal(stop_signal)
    assert child.wait(timeout=10) == 0, log.read_text()
    assert log.read_text().rstrip().endswith("stopped")
    assert not Path(ca_path.group(1)).parent.exists()


@pytest.mark.parametrize(
    ("command", "keys", "variable"),
    [
        pytest.param(["serve", "--port", "1"], "not-base64!", "M365CONNECT_ENCRYPTION_KEYS", id="bad-keys"),
        pytest.param(
            ["api-keys", "create", "--account", "acme"],
            KEY_A,
            "M365CONNECT_MAX_ACCOUNTS_PER_REQUEST",
            id="bad-limit",
        ),
    ],
)
def test_bad_configuration_is_one_clear_line_not_a_traceback(
    database_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str], keys: str, variable: str
) -> None:
    monkeypatch.setenv("M365CONNECT_MAX_ACCOUNTS_PER_REQUEST", "many" if "MAX" in variable else "1000")
    result = cli(database_path, *command, keys=keys, exit_code=2)
    assert f"invalid configuration: {variable}" in result.output
    assert "Traceback" not in result.output


# ------------------------------------------------------------------------ a new user's first mistakes


def run_process(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `m365connect ARGS` as a real process to completion; stdout and stderr together."""
    return subprocess.run(
        [str(EXECUTABLE), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=START_TIMEOUT,
        check=False,
    )


def assert_one_line(finished: subprocess.CompletedProcess[str], expected: str, *, exit_code: int) -> None:
    """The whole output is exactly this one line, with this exit code."""
    assert "Traceback" not in finished.stdout
    assert finished.stdout.splitlines() == [expected], finished.stdout
    assert finished.returncode == exit_code, finished.stdout


BAD_CONFIGURATION = {
    "unparsable database URL": (
        {"M365CONNECT_DATABASE_URL": "m365connect.db"},
        "invalid configuration: M365CONNECT_DATABASE_URL: not a database URL; e.g. "
        "sqlite+aiosqlite:///./m365connect.db or postgresql+asyncpg://user:password@host:5432/m365connect",
    ),
    "postgresql without its driver": (
        {"M365CONNECT_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/m365connect"},
        "invalid configuration: M365CONNECT_DATABASE_URL: postgresql:// has no installed async driver: "
        "use postgresql+asyncpg://",
    ),
    "unsupported database": (
        {"M365CONNECT_DATABASE_URL": "mysql://root@127.0.0.1/m365connect"},
        "invalid configuration: M365CONNECT_DATABASE_URL: unsupported database 'mysql': "
        "use sqlite+aiosqlite:// or postgresql+asyncpg://",
    ),
    "DNS nameserver by name": (
        {"M365CONNECT_DNS_NAMESERVERS": "nonexistent.invalid"},
        "invalid configuration: M365CONNECT_DNS_NAMESERVERS: nameserver 'nonexistent.invalid': "
        "the host must be an IP address",
    ),
    "pacing on Redis without Redis": (
        {"M365CONNECT_GRAPH_PACING_STORE": "redis"},
        "invalid configuration: M365CONNECT_GRAPH_PACING_STORE=redis needs M365CONNECT_REDIS_URL",
    ),
    "an Outlook maximum below the start": (
        {"M365CONNECT_GRAPH_PACING_OUTLOOK_MAX_CONCURRENCY": "2"},
        "invalid configuration: M365CONNECT_GRAPH_PACING_OUTLOOK_MAX_CONCURRENCY (2) must be at least "
        "M365CONNECT_GRAPH_PACING_OUTLOOK_CONCURRENCY (4)",
    ),
    "missing CA bundle": (
        {"M365CONNECT_CA_BUNDLE": "/nope.pem"},
        "invalid configuration: M365CONNECT_CA_BUNDLE: no such file: /nope.pem",
    ),
}


@pytest.mark.parametrize("command", [["serve", "--port", "1"], ["api-keys", "list"]])
@pytest.mark.parametrize("case", list(BAD_CONFIGURATION))
def test_a_bad_setting_is_one_line_and_exit_code_2(tmp_path: Path, case: str, command: list[str]) -> None:
    variables, expected = BAD_CONFIGURATION[case]
    finished = run_process(*command, cwd=tmp_path, env=clean_env(**variables))
    assert_one_line(finished, expected, exit_code=2)
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


@pytest.mark.parametrize("command", [["serve", "--port", "1"], ["migrate"]])
def test_an_unreachable_database_is_one_line_without_its_password(tmp_path: Path, command: list[str]) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql+asyncpg://postgres:not-a-real-password@127.0.0.1:{port}/m365connect"
    env = clean_env(M365CONNECT_DATABASE_URL=url, M365CONNECT_ENCRYPTION_KEYS=KEY_A)
    finished = run_process(*command, cwd=tmp_path, env=env)
    assert_one_line(
        finished,
        f"cannot use the database postgresql+asyncpg://postgres:***@127.0.0.1:{port}/m365connect: "
        f"[Errno 111] Connect call failed ('127.0.0.1', {port})",
        exit_code=2,
    )


def test_a_folder_where_nothing_can_be_written_is_one_line(tmp_path: Path) -> None:
    # Tests run as root here, which ignores a folder's permission bits: a "folder" that is a regular file
    # refuses to hold files the same way a read-only working directory does (the same OSError path).
    not_a_folder = tmp_path / "not-a-folder"
    not_a_folder.write_text("")
    database = f"sqlite+aiosqlite:///{not_a_folder}/m365connect.db"
    no_key_file = run_process("serve", cwd=tmp_path, env=clean_env(M365CONNECT_DATABASE_URL=database))
    assert_one_line(
        no_key_file,
        f"cannot create or read the encryption key file {not_a_folder}/m365connect.key: File exists",
        exit_code=2,
    )
    env = clean_env(M365CONNECT_DATABASE_URL=database, M365CONNECT_ENCRYPTION_KEYS=KEY_A)
    assert_one_line(
        run_process("serve", cwd=tmp_path, env=env),
        f"cannot use the database {database}: [Errno 20] Not a directory: '{not_a_folder}/m365connect.db' "
        "(does its folder exist, and may this user write there?)",
        exit_code=2,
    )


def test_api_key_arguments_out_of_range_are_one_line(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    # SQLite would store a 201-character name (it ignores VARCHAR(200)); PostgreSQL refused it with a
    # traceback: the service's input check now answers the same on both.
    url = url_of(tmp_path / "keys.db") if backend == "sqlite" else request.getfixturevalue("postgres_url")
    env = clean_env(M365CONNECT_DATABASE_URL=url, M365CONNECT_ENCRYPTION_KEYS=KEY_A)
    long_name = "a" * 201
    assert_one_line(
        run_process("api-keys", "create", "--account", long_name, cwd=tmp_path, env=env),
        "invalid --account: the account name has 201 characters; at most 200 are allowed",
        exit_code=2,
    )
    assert_one_line(
        run_process("api-keys", "revoke", "99999999999999999999", cwd=tmp_path, env=env),
        "no active API key with id 99999999999999999999",
        exit_code=1,
    )
    key = run_process("api-keys", "create", "--quiet", "--account", "a" * 200, cwd=tmp_path, env=env)
    assert key.returncode == 0, key.stdout
    assert re.fullmatch(r"m365c_[a-z0-9]{12}_[A-Za-z0-9_-]{43}\n", key.stdout)  # the key alone: KEY=$(...)
    assert account_of_url(url, key.stdout.strip()) == "a" * 200


def test_version_is_the_package_version(tmp_path: Path) -> None:
    finished = run_process("--version", cwd=tmp_path, env=clean_env())
    assert_one_line(finished, f"m365connect {version('m365connect')}", exit_code=0)


def test_serve_says_which_database_and_whether_it_generated_a_key(
    tmp_path: Path, spawn: Children, postgres_url: str
) -> None:
    with_password = make_url(postgres_url).set(password="not-a-real-password")
    env = clean_env(
        M365CONNECT_DATABASE_URL=with_password.render_as_string(hide_password=False),
        M365CONNECT_KEY_FILE=str(tmp_path / "m365connect.key"),
        M365CONNECT_LOG_FORMAT="json",
    )
    shown = with_password.render_as_string(hide_password=True)
    for run, expected in enumerate(
        [
            f"new key generated into {tmp_path / 'm365connect.key'} (back it up: stored secrets cannot be "
            "read without it)",
            f"key file {tmp_path / 'm365connect.key'}",
        ]
    ):
        port, log = free_port(), tmp_path / f"serve-{run}.log"
        child = spawn.start(["serve", "--port", str(port)], cwd=tmp_path, env=env, log=log)
        wait_until_healthy(child, f"http://127.0.0.1:{port}", log=log)
        child.terminate()
        child.wait(timeout=10)
        events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        starting = [event for event in events if event["event"] == "service.starting"]
        assert len(starting) == 1, log.read_text()
        assert (starting[0]["database"], starting[0]["encryption_keys"]) == (shown, expected)
        assert "not-a-real-password" not in log.read_text()


def test_fake_microsoft_on_a_taken_port_or_a_bad_scenario_is_a_clear_message(tmp_path: Path) -> None:
    scenario = str(ROOT / "examples" / "scenario.yaml")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run_process(
            "fake-microsoft",
            "--scenario",
            scenario,
            "--port",
            str(port),
            "--dns-port",
            "0",
            cwd=tmp_path,
            env=clean_env(),
        )
    assert_one_line(
        busy,
        f"fake-microsoft failed: cannot listen on 127.0.0.1:{port} (HTTPS): Address already in use",
        exit_code=1,
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("tenants:\n  - id: 1\n", encoding="utf-8")
    refused = run_process("fake-microsoft", "--scenario", str(bad), cwd=tmp_path, env=clean_env())
    assert "Traceback" not in refused.stdout
    assert refused.stdout.splitlines() == [
        f"fake-microsoft failed: {bad}: invalid scenario:",
        "  tenants[0].id: UUID input should be a string, bytes or UUID object",
    ]
    assert refused.returncode == 2
