"""A stored secret that does not open (rows swapped, key removed from the ring): a documented 422 naming
nothing secret, the credential id in the log, /readyz 503, and the account repairs it by sending the
secret again. Through the real ASGI stack, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from m365connect.app import create_app
from m365connect.credentials import repository
from m365connect.credentials.models import GraphCredential
from m365connect.crypto import generate_key
from m365connect.settings import Settings
from m365connect.state import AppState, open_state
from tests import scenario_values as sv
from tests.factories import CREDENTIALS, FABRIKAM, bulk, create_credential
from tests.helpers import assert_code, headers

NOT_OPENING = "stored secrets do not open with the configured keys (see the log)"
WITHOUT_KEY = "stored secrets are sealed with a key missing from M365CONNECT_ENCRYPTION_KEYS"
ROTATE = {"client_secret": sv.WORKING_SECRET, "secret_expires_at": sv.FUTURE}


@asynccontextmanager
async def restarted(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The service started afresh on the same database (its start-up check included)."""
    async with open_state(settings) as state:
        transport = httpx.ASGITransport(app=create_app(settings, state=state), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://m365connect.test") as http:
            yield http


async def swap_secrets(state: AppState, first: int, second: int) -> tuple[bytes, bytes]:
    """Exchange two credentials' sealed secrets in the database (as a bad restore or manual edit would)."""
    async with state.sessions() as session:
        one = await repository.get_secret(session, credential_id=first)
        two = await repository.get_secret(session, credential_id=second)
        assert one is not None
        assert two is not None
        for row, value in ((first, two), (second, one)):
            await session.execute(
                update(GraphCredential).where(GraphCredential.id == row).values(secret_ciphertext=value)
            )
        await session.commit()
    return bytes(one), bytes(two)


def unreadable_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.getMessage() == "credential.secret.unreadable"]


def assert_nothing_secret_logged(
    caplog: pytest.LogCaptureFixture, *, secrets: list[str], sealed: list[bytes]
) -> None:
    logs = caplog.text + "\n".join(str(record.__dict__) for record in caplog.records)
    for secret in secrets:
        assert secret not in logs
    for value in sealed:
        for shown in (value.hex(), base64.b64encode(value).decode(), repr(value), value[17:].hex()):
            assert shown not in logs


async def readiness(http: httpx.AsyncClient) -> tuple[int, Any]:
    ready = await http.get("/readyz")
    return ready.status_code, ready.json()["configuration"]


async def test_swapped_secrets_are_a_422_named_in_the_log_and_readyz_reports_them(
    client: httpx.AsyncClient,
    api_key: str,
    state: AppState,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    contoso = (await create_credential(client, api_key=api_key))["credential_id"]
    fabrikam = (await create_credential(client, api_key=api_key, **FABRIKAM))["credential_id"]
    sealed = await swap_secrets(state, contoso, fabrikam)

    refused = await bulk(client, api_key=api_key, emails=["jim@contoso.com"], credential_id=contoso)
    assert_code(refused, "CREDENTIAL_UNREADABLE")
    [record] = unreadable_records(caplog)
    assert (record.credential_id, record.reason) == (  # type: ignore[attr-defined]
        contoso,
        "does not open with its key: moved from another row, or altered",
    )
    # Found by the request: readiness knows at once, without decrypting every row at every probe.
    assert await readiness(client) == (503, f"1 {NOT_OPENING}")

    async with restarted(settings) as http:  # a restart tries every row once and finds both
        assert await readiness(http) == (503, f"2 {NOT_OPENING}")
        starting = unreadable_records(caplog)[-1]
        assert starting.credential_ids == [contoso, fabrikam]  # type: ignore[attr-defined]
        renamed = await http.patch(
            f"{CREDENTIALS}/{contoso}", json={"name": "renamed"}, headers=headers(api_key)
        )
        assert renamed.status_code == 200, renamed.text
        # The account repairs it itself: a new secret is verified and sealed without opening the old one.
        repaired = await http.patch(f"{CREDENTIALS}/{contoso}", json=ROTATE, headers=headers(api_key))
        assert repaired.status_code == 200, repaired.text
        assert await readiness(http) == (503, f"1 {NOT_OPENING}")
        connected = await bulk(http, api_key=api_key, emails=["jim@contoso.com"], credential_id=contoso)
        assert connected.status_code == 201, connected.text
        deleted = await http.delete(f"{CREDENTIALS}/{fabrikam}", headers=headers(api_key))
        assert deleted.status_code == 204, deleted.text
        assert await readiness(http) == (200, "ok")
    assert_nothing_secret_logged(caplog, secrets=[sv.WORKING_SECRET, sv.FABRIKAM_SECRET], sealed=list(sealed))


async def test_a_key_missing_from_the_ring_is_a_422_naming_the_credential_and_key_id(
    client: httpx.AsyncClient, api_key: str, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    credential_id = (await create_credential(client, api_key=api_key))["credential_id"]
    old_key = settings.encryption_keys or ""
    key_id = hashlib.sha256(base64.b64decode(old_key)).digest()[:4].hex()
    changed = settings.model_copy(update={"encryption_keys": generate_key()})  # OLD removed too early
    async with restarted(changed) as http:
        [starting] = unreadable_records(caplog)  # the start-up pass names it too
        named = (starting.count, starting.key_missing, starting.credential_ids)  # type: ignore[attr-defined]
        assert named == (1, 1, [credential_id])
        refused = await bulk(http, api_key=api_key, emails=["pam@contoso.com"])
        assert_code(refused, "CREDENTIAL_UNREADABLE")
        record = unreadable_records(caplog)[-1]
        assert record.credential_id == credential_id  # type: ignore[attr-defined]
        assert record.reason == f"sealed with key id {key_id}, which is not in the key ring"  # type: ignore[attr-defined]
        assert await readiness(http) == (503, f"1 {WITHOUT_KEY}")  # counted once, not also as "not opening"
        repaired = await http.patch(f"{CREDENTIALS}/{credential_id}", json=ROTATE, headers=headers(api_key))
        assert repaired.status_code == 200, repaired.text
        assert await readiness(http) == (200, "ok")
        connected = await bulk(http, api_key=api_key, emails=["pam@contoso.com"])
        assert connected.status_code == 201, connected.text
    assert old_key not in caplog.text
    assert_nothing_secret_logged(caplog, secrets=[sv.WORKING_SECRET], sealed=[])
