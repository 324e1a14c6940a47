"""Factories: keyword-only ones that go through the public API, and rows written straight to a database
for tests of what the service does with stored data."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from m365connect.accounts.models import Account
from m365connect.accounts.service import create_api_key
from m365connect.credentials.models import GraphCredential
from m365connect.crypto import SecretBox, credential_secret_aad
from m365connect.db.engine import create_engine, create_session_factory
from m365connect.state import AppState
from tests import scenario_values as sv
from tests.helpers import headers

CREDENTIALS = "/rest/v2/mailboxes/microsoft/credentials"
BULK = "/rest/v2/mailboxes/microsoft/bulk"
MAILBOXES = "/rest/v2/mailboxes/microsoft"
EVENTS = "/rest/v2/events"
WEBHOOKS = "/rest/v2/webhooks"


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


async def insert_sealed_credentials(
    database_url: str, sealed: list[tuple[str, SecretBox | None]]
) -> list[int]:
    """Credential rows of a new account "acme" whose secrets are sealed with these boxes (None: the row
    before's ciphertext, which cannot open in this row); their ids."""
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine)() as session:
            account = Account(name="acme")
            session.add(account)
            await session.flush()
            rows: list[GraphCredential] = []
            for number, (secret, box) in enumerate(sealed):
                row = GraphCredential(
                    account_id=account.id,
                    name=f"credential {number}",
                    tenant_id=sv.CONTOSO_TENANT,
                    tenant_key=sv.CONTOSO_TENANT,
                    client_id=f"{number:08d}-0000-4000-8000-000000000000",
                    secret_ciphertext=b"",
                    secret_expires_at=datetime(2030, 1, 31, tzinfo=UTC),
                )
                session.add(row)
                await session.flush()
                if box is not None:
                    row.secret_ciphertext = box.seal(secret, associated_data=credential_secret_aad(row.id))
                else:  # moved here from the row before: sealed for that row, it cannot open in this one
                    row.secret_ciphertext = rows[-1].secret_ciphertext
                rows.append(row)
            await session.commit()
            return [row.id for row in rows]
    finally:
        await engine.dispose()


def one_tenant_scenario(
    *, tenant: str, app: str, secret: str, domain: str, emails: list[str]
) -> dict[str, Any]:
    """A simulator scenario of one tenant: these mailboxes, one app with the recommended permissions, SPF
    for the domain (the large tenants of the crash and job tests)."""
    return {
        "tenants": [
            {
                "id": tenant,
                "domains": [domain],
                "apps": [
                    {
                        "client_id": app,
                        "name": "test app",
                        "roles": ["User.Read.All", "Mail.Send", "MailboxSettings.Read"],
                        "secrets": [{"value": secret, "expires_at": "2099-12-31T23:59:59Z"}],
                    }
                ],
                "users": [
                    {
                        "user_principal_name": email,
                        "display_name": email,
                        "proxy_addresses": [f"SMTP:{email}"],
                    }
                    for email in emails
                ],
            }
        ],
        "dns": {
            "zones": {
                domain: (
                    f"@ 3600 IN SOA ns1.{domain}. hostmaster.{domain}. 1 3600 600 86400 300\n"
                    '@ 3600 IN TXT "v=spf1 include:spf.protection.outlook.com -all"\n'
                )
            }
        },
    }


async def key_for(state: AppState, account: str) -> str:
    """A new API key of `account` (created when missing), committed; its plaintext."""
    async with state.sessions() as session:
        created = await create_api_key(session, account_name=account)
        await session.commit()
    return created.plaintext
