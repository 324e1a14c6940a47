"""Two clouds through two `serve` replicas at once: every request of a usgov credential goes to the usgov
URLs and every request of a global one to the global URLs, whichever process serves it (issue 10 item 4)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

from m365connect.crypto import generate_key
from m365connect.simulator import FakeMicrosoft
from tests import scenario_values as sv
from tests.factories import BULK, CREDENTIALS, FABRIKAM, MAILBOXES, credential_body
from tests.helpers import headers
from tests.processes import Children
from tests.served import new_api_key, serve, service_env

ROUNDS = 3
USGOV_MAILBOXES = ["jim@contoso.com", "pam@contoso.com"]
GLOBAL_MAILBOXES = ["erin@fabrikam.com"]


def _contoso_in_usgov(microsoft: FakeMicrosoft) -> None:
    """Contoso becomes a GCC High tenant (the microsoft fixture puts the example directory back)."""
    scenario = microsoft.scenario
    tenants = [
        tenant.model_copy(update={"cloud": "usgov"}) if str(tenant.id) == sv.CONTOSO_TENANT else tenant
        for tenant in scenario.tenants
    ]
    microsoft.change_directory(scenario.model_copy(update={"tenants": tenants}))


async def _connect_then_disconnect(http: httpx.AsyncClient, key: str, emails: list[str]) -> None:
    """One round: connect (Graph is asked, the mailboxes being new), then disconnect for the next round."""
    body = {"accounts": [{"mailbox_email": email} for email in emails]}
    response = await http.post(BULK, json=body, headers=headers(key))
    assert response.status_code == 201, response.text
    for item in response.json():
        assert item["success"], item
        assert "already_connected" not in item, item
        gone = await http.delete(f"{MAILBOXES}/{item['id']}", headers=headers(key))
        assert gone.status_code == 204, gone.text


async def test_two_replicas_serve_two_clouds_at_once(
    database_url: str, microsoft: FakeMicrosoft, tmp_path: Path
) -> None:
    _contoso_in_usgov(microsoft)
    usgov_url = f"{microsoft.base_url}/clouds/usgov"
    env = service_env(
        database_url=database_url,
        keys=generate_key(),
        microsoft=microsoft,
        M365CONNECT_CLOUD_URLS=json.dumps({"usgov": {"login_url": usgov_url, "graph_url": usgov_url}}),
    )
    usgov_key = await new_api_key(database_url, account="gcc-high")
    global_key = await new_api_key(database_url, account="commercial")
    children = Children()
    try:
        first, _ = serve(children, env=env, workdir=tmp_path, name="serve-1")
        second, _ = serve(children, env=env, workdir=tmp_path, name="serve-2")
        async with (
            httpx.AsyncClient(base_url=first, timeout=30) as one,
            httpx.AsyncClient(base_url=second, timeout=30) as two,
        ):
            usgov = await one.post(
                CREDENTIALS, json=credential_body(cloud="usgov"), headers=headers(usgov_key)
            )
            assert usgov.status_code == 201, usgov.text
            body = credential_body(**FABRIKAM)
            commercial = await two.post(CREDENTIALS, json=body, headers=headers(global_key))
            assert commercial.status_code == 201, commercial.text
            microsoft.stats.reset()
            for round_ in range(ROUNDS):
                # Each round swaps which replica serves which cloud, so each process serves both.
                a, b = (one, two) if round_ % 2 == 0 else (two, one)
                await asyncio.gather(
                    _connect_then_disconnect(a, usgov_key, USGOV_MAILBOXES),
                    _connect_then_disconnect(b, global_key, GLOBAL_MAILBOXES),
                )
    finally:
        children.stop_all()

    counts = microsoft.stats.by_cloud
    assert set(counts) == {"usgov", "global"}
    # Every round asked each cloud's Graph (new mailboxes each time); a cross-over would have been refused
    # by the simulator (wrong scope: AADSTS500011; wrong audience: 401) and failed the round's 201.
    assert counts["usgov"]["graph_requests"] >= ROUNDS
    assert counts["global"]["graph_requests"] >= ROUNDS
