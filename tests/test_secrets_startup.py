"""Start-up with stored secrets the keys cannot open, through real `m365connect serve` and
`m365connect encryption rotate` processes, on SQLite and PostgreSQL.

- the key file lost beside sealed secrets: `serve` refuses (exit 2) and never writes a new key;
- the key file readable by others: a warning naming the file and `chmod 600`;
- rows that do not open (swapped): `serve` starts not-ready, names them, and `rotate` re-seals every other
  row, names each bad one and exits 1.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, update

from m365connect.credentials.models import GraphCredential
from m365connect.crypto import SecretBox, credential_secret_aad, generate_key, parse_keys
from m365connect.db.engine import create_engine, create_session_factory
from m365connect.simulator import FakeMicrosoft
from tests import scenario_values as sv
from tests.factories import BULK, CREDENTIALS, FABRIKAM, credential_body, insert_sealed_credentials
from tests.helpers import headers
from tests.processes import EXECUTABLE, START_TIMEOUT, Children
from tests.served import new_api_key, serve, service_env

NOT_OPENING = "stored secrets do not open with the configured keys (see the log)"
MOVED = "does not open with its key: moved from another row, or altered"
ROTATE = {"client_secret": sv.WORKING_SECRET, "secret_expires_at": sv.FUTURE}


def key_file_env(database_url: str, microsoft: FakeMicrosoft) -> dict[str, str]:
    """A service environment without M365CONNECT_ENCRYPTION_KEYS: the key file is used."""
    env = service_env(database_url=database_url, keys="", microsoft=microsoft)
    del env["M365CONNECT_ENCRYPTION_KEYS"]
    return env


async def run_cli(args: list[str], *, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """Run `m365connect ARGS` to completion: exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        str(EXECUTABLE),
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def add_credential(http: httpx.AsyncClient, api_key: str, **overrides: Any) -> int:
    created = await http.post(CREDENTIALS, json=credential_body(**overrides), headers=headers(api_key))
    assert created.status_code == 201, created.text
    return int(created.json()["credential_id"])


async def test_a_lost_key_file_refuses_to_start_and_is_never_replaced(
    database_url: str, microsoft: FakeMicrosoft, tmp_path: Path, children: Children
) -> None:
    env = key_file_env(database_url, microsoft)
    key_file = tmp_path / "m365connect.key"  # beside the SQLite file; the working directory for PostgreSQL
    api_key = await new_api_key(database_url, account="acme")
    url, log = serve(children, env=env, workdir=tmp_path, name="first")  # empty database: a key is made
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "chmod" not in log.read_text()
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        await add_credential(http, api_key)
    children.stop_all()
    original = key_file.read_text()

    key_file.unlink()
    refused_log = tmp_path / "refused.log"
    child = children.start(["serve", "--port", "1"], cwd=tmp_path, env=env, log=refused_log)
    assert child.wait(timeout=START_TIMEOUT) == 2, refused_log.read_text()
    said = refused_log.read_text()
    assert f"refused: the key file {key_file} does not exist, but the database holds 1 client secrets" in said
    assert "Traceback" not in said
    assert not key_file.exists()  # no fresh key that would open nothing
    code, _out, err = await run_cli(["encryption", "rotate"], env=env, cwd=tmp_path)
    assert (code, key_file.exists()) == (2, False), err

    # Restored (as a backup would bring it back): the same service again, and the secret opens.
    key_file.write_text(original)
    os.chmod(key_file, 0o600)
    url, log = serve(children, env=env, workdir=tmp_path, name="restored")
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        connected = await http.post(
            BULK, json={"accounts": [{"mailbox_email": "jim@contoso.com"}]}, headers=headers(api_key)
        )
        assert connected.status_code == 201, connected.text
    assert original.strip() not in log.read_text()


async def test_a_key_file_others_may_read_starts_with_a_warning_naming_the_fix(
    database_url: str, microsoft: FakeMicrosoft, tmp_path: Path, children: Children
) -> None:
    env = key_file_env(database_url, microsoft)
    key_file = tmp_path / "m365connect.key"
    serve(children, env=env, workdir=tmp_path, name="created")
    children.stop_all()
    warning = (
        f"warning: the encryption key file {key_file} is readable or writable by group or others "
        f"(mode 0644); fix it with: chmod 600 {key_file}"
    )
    os.chmod(key_file, 0o644)
    url, log = serve(children, env=env, workdir=tmp_path, name="exposed")  # a warning, not a refusal
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        assert (await http.get("/readyz")).status_code == 200
    children.stop_all()
    assert warning in log.read_text().splitlines()
    code, out, err = await run_cli(["encryption", "rotate"], env=env, cwd=tmp_path)
    assert (code, err.splitlines()) == (0, [warning]), out
    assert key_file.read_text().strip() not in log.read_text() + out + err

    os.chmod(key_file, 0o600)
    code, out, err = await run_cli(["encryption", "rotate"], env=env, cwd=tmp_path)
    assert (code, err) == (0, ""), out
    _, log = serve(children, env=env, workdir=tmp_path, name="fixed")
    assert "chmod" not in log.read_text()


async def _swap(database_url: str, first: int, second: int) -> None:
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine)() as session:
            rows = dict(
                (await session.execute(select(GraphCredential.id, GraphCredential.secret_ciphertext))).all()
            )
            for row, other in ((first, second), (second, first)):
                await session.execute(
                    update(GraphCredential)
                    .where(GraphCredential.id == row)
                    .values(secret_ciphertext=rows[other])
                )
            await session.commit()
    finally:
        await engine.dispose()


def log_events(log: Path, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


async def test_swapped_secrets_start_not_ready_and_rotate_names_them(
    database_url: str, microsoft: FakeMicrosoft, tmp_path: Path, children: Children
) -> None:
    env = service_env(database_url=database_url, keys=generate_key(), microsoft=microsoft)
    api_key = await new_api_key(database_url, account="acme")
    url, _ = serve(children, env=env, workdir=tmp_path, name="before")
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        contoso = await add_credential(http, api_key)
        fabrikam = await add_credential(http, api_key, **FABRIKAM)
    children.stop_all()
    await _swap(database_url, contoso, fabrikam)

    # Two replicas on the database: both start (not-ready, not refused) and name both rows.
    url, log = serve(children, env=env, workdir=tmp_path, name="swapped")
    other_url, other_log = serve(children, env=env, workdir=tmp_path, name="swapped-2")
    for started in (log, other_log):
        [found] = log_events(started, "credential.secret.unreadable")
        assert (found["count"], found["key_missing"], found["credential_ids"]) == (2, 0, [contoso, fabrikam])
    async with (
        httpx.AsyncClient(base_url=url, timeout=30) as http,
        httpx.AsyncClient(base_url=other_url, timeout=30) as other,
    ):
        for replica in (http, other):
            ready = await replica.get("/readyz")
            assert (ready.status_code, ready.json()["configuration"]) == (503, f"2 {NOT_OPENING}")
        refused = await http.post(
            BULK, json={"credential_id": contoso, "accounts": [{"mailbox_email": "jim@contoso.com"}]},
            headers=headers(api_key),
        )  # fmt: skip
        assert (refused.status_code, refused.json()) == (422, {"message": "CREDENTIAL_UNREADABLE"})

        code, out, err = await run_cli(["encryption", "rotate"], env=env, cwd=tmp_path)
        assert code == 1, out + err
        assert "re-encrypted 0 of 2 stored secrets" in out
        for credential_id in (contoso, fabrikam):
            assert f"credential {credential_id}: not re-encrypted: {MOVED}" in err

        # Sent again through one replica; the other sees the repair at its next probe, without a restart.
        for credential_id, secret in ((contoso, sv.WORKING_SECRET), (fabrikam, sv.FABRIKAM_SECRET)):
            repaired = await http.patch(
                f"{CREDENTIALS}/{credential_id}",
                json={**ROTATE, "client_secret": secret},
                headers=headers(api_key),
            )
            assert repaired.status_code == 200, repaired.text
        for replica in (other, http):
            ready = await replica.get("/readyz")
            assert ready.status_code == 200, ready.text
        connected = await other.post(
            BULK, json={"credential_id": contoso, "accounts": [{"mailbox_email": "jim@contoso.com"}]},
            headers=headers(api_key),
        )  # fmt: skip
        assert connected.status_code == 201, connected.text
    code, out, err = await run_cli(["encryption", "rotate"], env=env, cwd=tmp_path)
    assert (code, "re-encrypted 0 of 2 stored secrets" in out, err) == (0, True, "")
    for secret in (sv.WORKING_SECRET, sv.FABRIKAM_SECRET):
        assert secret not in log.read_text() + other_log.read_text() + out + err


async def _sealed(database_url: str) -> dict[int, bytes]:
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine)() as session:
            rows = await session.execute(select(GraphCredential.id, GraphCredential.secret_ciphertext))
            return {row_id: bytes(value) for row_id, value in rows}
    finally:
        await engine.dispose()


async def test_rotate_reseals_every_row_it_can_and_names_each_it_cannot(
    database_url: str, microsoft: FakeMicrosoft, tmp_path: Path
) -> None:
    key_a, key_b, key_gone = generate_key(), generate_key(), generate_key()
    box_a, only_b, box_gone = (SecretBox(parse_keys(key)) for key in (key_a, key_b, key_gone))
    ring = SecretBox(parse_keys(f"{key_b},{key_a}"))
    rows: list[tuple[str, SecretBox | None]] = [
        ("Zq1~secret.sealed.with.a", box_a),
        ("Zq2~secret.sealed.with.a.lost.key", box_gone),
        ("Zq3~secret.sealed.with.b", only_b),
        ("Zq4~unused", None),  # holds the row before's ciphertext
        ("Zq5~secret.sealed.with.b.too", only_b),
        ("Zq6~secret.sealed.with.a.too", box_a),
    ]
    ids = await insert_sealed_credentials(database_url, rows)
    old_a, lost, mine, moved, current_b, old_a_2 = ids
    before = await _sealed(database_url)

    env = service_env(database_url=database_url, keys=f"{key_b},{key_a}", microsoft=microsoft)
    code, out, err = await run_cli(["encryption", "rotate"], env=env, cwd=tmp_path)
    assert code == 1, out + err
    assert "re-encrypted 2 of 6 stored secrets" in out
    gone_id = SecretBox(parse_keys(key_gone)).seal("x", associated_data="x")[1:5].hex()
    named = [line for line in err.splitlines() if line.startswith("credential ")]
    assert named == [
        f"credential {lost}: not re-encrypted: sealed with key id {gone_id}, which is not in the key ring",
        f"credential {moved}: not re-encrypted: {MOVED}",
    ]
    assert "2 stored secrets could not be opened" in err
    after = await _sealed(database_url)
    changed = {row for row in ids if after[row] != before[row]}
    assert changed == {old_a, old_a_2}  # the bad rows are left as they are
    for row in (old_a, old_a_2, mine, current_b):
        assert only_b.open(after[row], associated_data=credential_secret_aad(row)) == rows[ids.index(row)][0]
    assert ring.needs_rotation(after[lost])
    printed = out + err
    for text in [
        *(secret for secret, _ in rows),
        key_a,
        key_b,
        key_gone,
        *(v.hex() for v in before.values()),
    ]:
        assert text not in printed
