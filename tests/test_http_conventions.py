"""Conventions of every response: error bodies, X-Request-Id, no stack traces, auth on every route."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from m365connect.app import create_app
from m365connect.crypto import generate_key
from m365connect.settings import Settings
from m365connect.state import AppState, open_state
from tests.factories import create_credential
from tests.helpers import assert_generic_error, headers

PUBLIC_PATHS = {"/healthz", "/readyz", "/metrics"}


async def test_unknown_path_is_documented_404(client: httpx.AsyncClient, api_key: str) -> None:
    response = await client.get("/rest/v2/nothing-here", headers=headers(api_key))
    assert_generic_error(response, status=404, title="Not Found", detail="Requested resource does not exist")


async def test_wrong_method_is_405(client: httpx.AsyncClient, api_key: str) -> None:
    response = await client.put("/rest/v2/mailboxes/microsoft/credentials", headers=headers(api_key))
    assert_generic_error(response, status=405, title="Method Not Allowed")


async def test_every_response_has_a_request_id_and_echoes_the_clients(client: httpx.AsyncClient) -> None:
    generated = await client.get("/healthz")
    assert len(generated.headers["x-request-id"]) == 32
    echoed = await client.get("/rest/v2/nope", headers={"X-Request-Id": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    unauthorized = await client.get("/rest/v2/mailboxes/microsoft/credentials")
    assert unauthorized.headers["x-request-id"]


async def test_unexpected_exception_is_a_generic_500_without_details(
    settings: Settings, state: AppState, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings, state=state)

    async def explode() -> None:
        raise RuntimeError("secret-internal-detail")

    app.add_api_route("/boom", explode)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        with caplog.at_level(logging.ERROR):
            response = await http.get("/boom")
    assert_generic_error(
        response,
        status=500,
        title="Internal server error",
        detail="An unexpected error has occurred. Please try again later.",
    )
    assert "secret-internal-detail" not in response.text
    assert response.headers["x-request-id"]
    assert "request.failed" in caplog.text


async def test_every_route_requires_the_api_key(
    client: httpx.AsyncClient, settings: Settings, state: AppState
) -> None:
    schema = create_app(settings, state=state).openapi()
    checked = 0
    for path, operations in schema["paths"].items():
        concrete = path.replace("{credential_id}", "1").replace("{mailbox_id}", "1")
        for method in operations:
            response = await client.request(method.upper(), concrete, json={})
            if path in PUBLIC_PATHS:
                assert response.status_code == 200, (method, path)
                continue
            assert_generic_error(response, status=401, title="Unauthorized", detail="Invalid api key")
            checked += 1
    assert checked >= 4


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ok", "database": "ok", "configuration": "ok"}


async def test_openapi_documents_what_the_service_answers(settings: Settings, state: AppState) -> None:
    schema = create_app(settings, state=state).openapi()
    operations = [op for ops in schema["paths"].values() for op in ops.values()]
    assert all(op["responses"].get("422", {}).get("description") != "Validation Error" for op in operations)
    listing = schema["paths"]["/rest/v2/mailboxes/microsoft"]["get"]["responses"]
    assert "400" in listing
    bulk = schema["paths"]["/rest/v2/mailboxes/microsoft/bulk"]["post"]["responses"]
    assert {"201", "207", "400", "401", "422", "500", "503"} <= set(bulk)
    assert schema["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "x-api-key"


async def test_security_headers_on_every_response(client: httpx.AsyncClient, api_key: str) -> None:
    for response in (
        await client.get("/healthz"),
        await client.get("/rest/v2/mailboxes/microsoft/credentials", headers=headers(api_key)),
        await client.get("/rest/v2/mailboxes/microsoft/credentials"),
        await client.get("/nope"),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"
        assert "server" not in response.headers
        assert "access-control-allow-origin" not in response.headers


async def test_oversized_bodies_are_413_and_save_nothing(
    client: httpx.AsyncClient, api_key: str, settings: Settings
) -> None:
    too_big = b'{"accounts": [' + b'{"mailbox_email": "a@b.com"},' * (settings.max_body_bytes // 28) + b"{}]}"
    url = "/rest/v2/mailboxes/microsoft/bulk"
    declared = await client.post(
        url, content=too_big, headers={**headers(api_key), "content-type": "application/json"}
    )
    assert_generic_error(declared, status=413, title="Payload Too Large")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while it streams
        for start in range(0, len(too_big), 65536):
            yield too_big[start : start + 65536]

    streamed = await client.post(
        url, content=chunks(), headers={**headers(api_key), "content-type": "application/json"}
    )
    assert_generic_error(streamed, status=413, title="Payload Too Large")
    assert streamed.headers["x-request-id"]


async def test_readiness_fails_when_a_stored_secret_has_no_key(
    client: httpx.AsyncClient, api_key: str, settings: Settings
) -> None:
    await create_credential(client, api_key=api_key)
    other_key = generate_key()
    for keys, status in ((other_key, 503), (f"{other_key},{settings.encryption_keys}", 200)):
        changed = settings.model_copy(update={"encryption_keys": keys})
        async with open_state(changed) as state:
            transport = httpx.ASGITransport(app=create_app(changed, state=state), raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                ready = await http.get("/readyz")
        assert ready.status_code == status, ready.text
        if status == 503:
            assert ready.json() == {
                "status": "unavailable",
                "database": "ok",
                "configuration": (
                    "1 stored secrets are sealed with a key missing from M365CONNECT_ENCRYPTION_KEYS"
                ),
            }
            assert ready.headers["retry-after"] == "60"
