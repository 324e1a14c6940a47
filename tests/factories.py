"""Keyword-only factories that go through the public API."""

from __future__ import annotations

from typing import Any

import httpx

from tests import scenario_values as sv
from tests.helpers import headers

CREDENTIALS = "/rest/v2/mailboxes/microsoft/credentials"
BULK = "/rest/v2/mailboxes/microsoft/bulk"
MAILBOXES = "/rest/v2/mailboxes/microsoft"


# The working app of the second tenant (the one with a domain per DNS case).
FABRIKAM: dict[str, Any] = {
    "tenant_id": sv.FABRIKAM_TENANT,
    "client_id": sv.FABRIKAM_APP,
    "client_secret": sv.FABRIKAM_SECRET,
}


def credential_body(**overrides: Any) -> dict[str, Any]:
    """A valid creation body for the working Contoso app, with overrides."""
    body: dict[str, Any] = {
        "tenant_id": sv.CONTOSO_TENANT,
        "client_id": sv.WORKING_APP,
        "client_secret": sv.WORKING_SECRET,
        "secret_expires_at": sv.FUTURE,
        "name": "MS Graph app",
    }
    body.update(overrides)
    return body


async def create_credential(client: httpx.AsyncClient, *, api_key: str, **overrides: Any) -> dict[str, Any]:
    """Create a credential through the API and return its JSON (asserting the 201)."""
    response = await client.post(CREDENTIALS, json=credential_body(**overrides), headers=headers(api_key))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def bulk(
    client: httpx.AsyncClient, *, api_key: str, emails: list[str], credential_id: int | None = None
) -> httpx.Response:
    """POST a bulk request for these addresses."""
    body: dict[str, Any] = {"accounts": [{"mailbox_email": email} for email in emails]}
    if credential_id is not None:
        body["credential_id"] = credential_id
    return await client.post(BULK, json=body, headers=headers(api_key))
