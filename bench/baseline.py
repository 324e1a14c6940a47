"""The baseline: what a user writes without m365connect. Microsoft Graph Python SDK, one mailbox at a time.

Follows Microsoft's samples: azure-identity's ClientSecretCredential, GraphServiceClient, then for each
address a `$filter` on proxyAddresses (an alias does not resolve through /users/{upn}) and a
`mailboxSettings` read, awaited one after the other. The CA of the simulator is trusted through
SSL_CERT_FILE / REQUESTS_CA_BUNDLE, set by the caller, as a user would.

`python bench/baseline.py BASE_URL TENANT CLIENT SECRET ADDRESS...` prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from azure.identity.aio import ClientSecretCredential
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph import GraphServiceClient
from msgraph.generated.users.users_request_builder import UsersRequestBuilder

SELECT = ["id", "displayName", "mail", "proxyAddresses", "accountEnabled", "userType"]


async def verify(client: GraphServiceClient, address: str) -> bool:
    """Find the user owning `address`, then check that its mailbox answers."""
    query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
        filter=f"proxyAddresses/any(x:x eq 'smtp:{address}')", select=SELECT
    )
    found = await client.users.get(request_configuration=RequestConfiguration(query_parameters=query))
    if found is None or not found.value or len(found.value) != 1 or found.value[0].id is None:
        return False
    user = found.value[0]
    if user.account_enabled is False or not user.mail:
        return False
    settings = await client.users.by_user_id(user.id).mailbox_settings.get()
    return settings is not None


async def main(base_url: str, tenant: str, client_id: str, secret: str, addresses: list[str]) -> dict:
    credential = ClientSecretCredential(
        tenant, client_id, secret, authority=base_url, disable_instance_discovery=True
    )
    client = GraphServiceClient(credentials=credential, scopes=["https://graph.microsoft.com/.default"])
    client.request_adapter.base_url = f"{base_url}/v1.0"
    try:
        started = time.perf_counter()
        verified = 0
        for address in addresses:
            verified += await verify(client, address)
        seconds = time.perf_counter() - started
    finally:
        await credential.close()
    return {"mailboxes": len(addresses), "verified": verified, "seconds": seconds}


if __name__ == "__main__":
    base, tenant_id, client, client_secret, *wanted = sys.argv[1:]
    sys.stdout.write(json.dumps(asyncio.run(main(base, tenant_id, client, client_secret, wanted))) + "\n")
