"""Secrets, tokens and API keys never appear in responses, logs (any level) or the raw database."""

from __future__ import annotations

import logging

import httpx
import pytest
from sqlalchemy import text

from m365connect.microsoft.token import ClientCredential
from m365connect.simulator import FakeMicrosoft
from m365connect.state import AppState
from tests import scenario_values as sv
from tests.factories import CREDENTIALS, bulk, create_credential
from tests.helpers import headers

TABLES = ("accounts", "api_keys", "graph_credentials", "mailboxes")


async def _raw_database_text(state: AppState) -> str:
    chunks: list[str] = []
    async with state.engine.connect() as connection:
        for table in TABLES:
            rows = (await connection.execute(text(f"SELECT * FROM {table}"))).all()
            for row in rows:
                for value in row:
                    chunks.append(
                        value.decode("latin-1") if isinstance(value, bytes | memoryview) else str(value)
                    )
    return "\n".join(chunks)


async def test_no_secret_in_responses_logs_or_database(
    client: httpx.AsyncClient,
    api_key: str,
    state: AppState,
    microsoft: FakeMicrosoft,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[httpx.Response] = []
    created = await create_credential(client, api_key=api_key)
    url = f"{CREDENTIALS}/{created['credential_id']}"
    seen.append(
        await client.patch(
            url, json={"client_secret": "wrong-one", "secret_expires_at": sv.FUTURE}, headers=headers(api_key)
        )
    )
    seen.append(
        await client.patch(
            url,
            json={"client_secret": sv.WORKING_SECRET_2, "secret_expires_at": sv.FUTURE},
            headers=headers(api_key),
        )
    )
    seen.append(
        await client.post(
            CREDENTIALS,
            json={
                "tenant_id": sv.CONTOSO_TENANT,
                "client_id": sv.WORKING_APP,
                "client_secret": 5,
                "secret_expires_at": sv.FUTURE,
            },
            headers=headers(api_key),
        )
    )
    microsoft.faults.graph_throttle_rate = 0.5
    microsoft.faults.graph_retry_after = 0.01
    seen.append(await bulk(client, api_key=api_key, emails=["jim@contoso.com", "kevin@contoso.com"]))
    seen.append(await client.get(CREDENTIALS, headers=headers(api_key)))
    token = (
        await state.tokens.acquire(ClientCredential(sv.CONTOSO_TENANT, sv.WORKING_APP, sv.WORKING_SECRET_2))
    ).value
    forbidden = [
        sv.WORKING_SECRET,
        sv.WORKING_SECRET_2,
        "wrong-one",
        api_key,
        api_key.split("_", 2)[2],
        token,
    ]
    bodies = (
        "\n".join(response.text for response in seen) + "\n" + "\n".join(str(dict(r.headers)) for r in seen)
    )
    database = await _raw_database_text(state)
    logs = caplog.text + "\n".join(str(record.__dict__) for record in caplog.records)
    assert any("oauth2/v2.0/token" in record.getMessage() for record in caplog.records)  # logs were captured
    for secret in forbidden:
        assert secret not in bodies
        assert secret not in logs
        assert secret not in database
    assert "eyJ" not in logs  # no JWT at all
