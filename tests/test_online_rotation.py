"""Encryption key rotation while the service runs: keys A -> B,A (+ `encryption rotate`) -> B (issue 5).

A real `m365connect serve` keeps connecting mailboxes with the stored credential before, during and
after `m365connect encryption rotate` runs as a separate process on the same database; restarted with
key B alone, the credential still works (its secret was re-sealed with B while the service served).
"""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import select

from m365connect.credentials.models import GraphCredential
from m365connect.crypto import SecretBox, credential_secret_aad, generate_key, parse_keys
from m365connect.db.engine import create_engine, create_session_factory
from m365connect.simulator import FakeMicrosoft
from tests import scenario_values as sv
from tests.factories import BULK, CREDENTIALS, MAILBOXES, credential_body
from tests.helpers import headers
from tests.processes import Children
from tests.served import new_api_key, serve, service_env

MAX_ROUNDS_DURING_ROTATION = 500


async def _connect(http: httpx.AsyncClient, key: str, email: str) -> int:
    """Connect one mailbox that is not connected yet (so the credential's secret is used); its id."""
    response = await http.post(BULK, json={"accounts": [{"mailbox_email": email}]}, headers=headers(key))
    assert response.status_code == 201, response.text
    (item,) = response.json()
    assert item["success"]
    assert "already_connected" not in item
    return int(item["id"])


async def _sealed(database_url: str) -> list[tuple[int, bytes]]:
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine)() as session:
            rows = await session.execute(select(GraphCredential.id, GraphCredential.secret_ciphertext))
            return [(row_id, bytes(sealed)) for row_id, sealed in rows]
    finally:
        await engine.dispose()


async def _connect_while_running(http: httpx.AsyncClient, key: str, rotation: Children, *, email: str) -> int:
    """Connect and disconnect `email` over and over until the rotation process exits; the round count."""
    rotator = rotation.started[-1]
    rounds = 0
    while rotator.poll() is None:
        assert rounds < MAX_ROUNDS_DURING_ROTATION, "the rotation did not finish"
        mailbox_id = await _connect(http, key, email)
        disconnected = await http.delete(f"{MAILBOXES}/{mailbox_id}", headers=headers(key))
        assert disconnected.status_code == 204, disconnected.text
        rounds += 1
    return rounds


async def test_rotation_while_serving_keeps_the_credential_usable(
    database_url: str, microsoft: FakeMicrosoft, tmp_path: Path
) -> None:
    key_a, key_b = generate_key(), generate_key()
    api_key = await new_api_key(database_url, account="rotation")
    children = Children()
    try:
        url, _ = serve(children, env=service_env(database_url=database_url, keys=key_a, microsoft=microsoft),
                       workdir=tmp_path, name="serve-a")  # fmt: skip
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            created = await http.post(CREDENTIALS, json=credential_body(), headers=headers(api_key))
            assert created.status_code == 201, created.text
            await _connect(http, api_key, "jim@contoso.com")
        children.stop_all()

        both = service_env(database_url=database_url, keys=f"{key_b},{key_a}", microsoft=microsoft)
        url, _ = serve(children, env=both, workdir=tmp_path, name="serve-ba")
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            await _connect(http, api_key, "pam@contoso.com")  # before: still sealed with A
            rotation, log = Children(), tmp_path / "rotate.log"
            try:
                rotation.start(["encryption", "rotate"], cwd=tmp_path, env=both, log=log)
                rounds = await _connect_while_running(http, api_key, rotation, email="oscar@contoso.com")
            finally:
                rotation.stop_all()
            assert rotation.started[0].returncode == 0, log.read_text()
            assert "re-encrypted 1 of 1 stored secrets" in log.read_text()
            assert rounds >= 1
            await _connect(http, api_key, "nate@contoso.com")  # after, same process
        children.stop_all()

        # The secret is now sealed with B (B alone opens it), and a service holding only B uses it.
        only_b = SecretBox(parse_keys(key_b))
        for row_id, sealed in await _sealed(database_url):
            assert not only_b.needs_rotation(sealed)
            assert only_b.open(sealed, associated_data=credential_secret_aad(row_id)) == sv.WORKING_SECRET
        microsoft.stats.reset()
        url, _ = serve(children, env=service_env(database_url=database_url, keys=key_b, microsoft=microsoft),
                       workdir=tmp_path, name="serve-b")  # fmt: skip
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            await _connect(http, api_key, "accounting@contoso.com")
            listed = await http.get(CREDENTIALS, headers=headers(api_key))
            assert [c["status"] for c in listed.json()["credentials"]] == ["VALID"]
    finally:
        children.stop_all()
    assert microsoft.stats.token_requests >= 1  # a fresh process: the secret opened with B reached Microsoft
