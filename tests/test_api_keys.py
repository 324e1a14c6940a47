"""API keys: shown once, stored as a hash, revocable; authentication answers the documented 401."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from m365connect.accounts import service
from m365connect.accounts.models import ApiKey
from m365connect.state import AppState
from tests.helpers import assert_generic_error, headers

CREDENTIALS = "/rest/v2/mailboxes/microsoft/credentials"


async def test_valid_key_is_accepted(client: httpx.AsyncClient, api_key: str) -> None:
    response = await client.get(CREDENTIALS, headers=headers(api_key))
    assert response.status_code == 200
    assert response.json() == {"credentials": []}


async def test_header_name_is_case_insensitive(client: httpx.AsyncClient, api_key: str) -> None:
    response = await client.get(CREDENTIALS, headers={"X-API-KEY": api_key})
    assert response.status_code == 200


async def test_missing_key_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get(CREDENTIALS)
    assert_generic_error(response, status=401, title="Unauthorized", detail="Invalid api key")


async def test_unknown_and_malformed_keys_are_401(client: httpx.AsyncClient, api_key: str) -> None:
    scheme, prefix, secret = api_key.split("_", 2)
    for bad in ["nope", "", f"{scheme}_{prefix}_{secret}x", f"{scheme}_{'a' * 12}_{secret}", api_key.upper()]:
        response = await client.get(CREDENTIALS, headers={"x-api-key": bad})
        assert_generic_error(response, status=401, title="Unauthorized", detail="Invalid api key")


async def test_revoked_key_is_401(client: httpx.AsyncClient, state: AppState, api_key: str) -> None:
    async with state.sessions() as session:
        key = await session.scalar(select(ApiKey))
        assert key is not None
        assert await service.revoke_api_key(session, key_id=key.id)
        assert not await service.revoke_api_key(session, key_id=key.id)
        await session.commit()
    response = await client.get(CREDENTIALS, headers=headers(api_key))
    assert_generic_error(response, status=401, title="Unauthorized", detail="Invalid api key")


async def test_only_a_hash_is_stored_and_last_use_is_recorded(
    client: httpx.AsyncClient, state: AppState, api_key: str
) -> None:
    await client.get(CREDENTIALS, headers=headers(api_key))
    async with state.sessions() as session:
        key = await session.scalar(select(ApiKey))
        assert key is not None
        assert api_key.encode() != key.key_hash
        assert key.prefix in api_key
        assert api_key.split("_", 2)[2] not in repr(vars(key))
        assert key.last_used_at is not None
        listed = await service.list_api_keys(session)
    assert [(item.id, name) for item, name in listed] == [(key.id, "acme")]


async def test_creating_a_key_for_an_existing_account_reuses_it(state: AppState) -> None:
    async with state.sessions() as session:
        first = await service.create_api_key(session, account_name="initech")
        second = await service.create_api_key(session, account_name="initech")
        await session.commit()
    assert first.account_id == second.account_id
    assert first.plaintext != second.plaintext
    async with state.sessions() as session:
        assert await service.authenticate(session, presented=second.plaintext) == first.account_id
