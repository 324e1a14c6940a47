"""The console's forms over the real ASGI stack on both databases: each refusal of the service lands next
to its field with docs/errors.md's words, typed values stay (secrets do not), certificates upload as PEM
or PFX files, and nothing a form refuses is changed."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from m365connect.app import create_app
from m365connect.codes import ErrorCode
from m365connect.explanations import EXPLANATIONS
from m365connect.settings import Settings
from m365connect.simulator import FakeMicrosoft
from m365connect.state import AppState
from tests import scenario_values as sv
from tests.certificates import REGISTERED, load
from tests.console.pages import csrf_of, sign_in, signed_in_csrf
from tests.factories import CREDENTIALS, MAILBOXES, bulk, create_credential
from tests.helpers import headers

PAGE = "/console/credentials"


@pytest.fixture
async def browser(settings: Settings, state: AppState, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """A signed-in, cookie-keeping client on the app."""
    app = create_app(settings, state=state)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://m365connect.test") as http:
        assert (await sign_in(http, api_key)).status_code == 303
        yield http


def field_error(page: str, field_id: str) -> str:
    """The error text shown next to a field (empty when none)."""
    found = re.search(rf'<p class="error" id="{re.escape(field_id)}-error">([^<]*)</p>', page)
    return html.unescape(found.group(1)) if found else ""


def input_value(page: str, field_id: str) -> str | None:
    found = re.search(rf'<input type="[a-z]+" id="{re.escape(field_id)}"[^>]*>', page)
    assert found is not None, field_id
    value = re.search(r'value="([^"]*)"', found.group(0))
    return value.group(1) if value else None


def add_form(**fields: str) -> dict[str, str]:
    body = {
        "tenant_id": sv.CONTOSO_TENANT,
        "client_id": sv.WORKING_APP,
        "client_secret": sv.WORKING_SECRET,
        "secret_expires_at": "2030-01-31",
        "kind": "secret",
        "cloud": "global",
    }
    body.update(fields)
    return body


async def api_credentials(client: httpx.AsyncClient, api_key: str) -> list[dict[str, object]]:
    listed = await client.get(CREDENTIALS, headers=headers(api_key))
    credentials: list[dict[str, object]] = listed.json()["credentials"]
    return credentials


async def test_refusals_land_next_to_their_field_and_keep_what_was_typed(
    browser: httpx.AsyncClient, client: httpx.AsyncClient, api_key: str
) -> None:
    token = await signed_in_csrf(browser)
    cases = [
        (add_form(client_secret="wrong-secret"), "add-client_secret", ErrorCode.INVALID_CLIENT_SECRET),
        (add_form(tenant_id="common"), "add-tenant_id", ErrorCode.INVALID_TENANT_ID),
        (add_form(client_id="not-a-guid"), "add-client_id", ErrorCode.INVALID_CLIENT_ID),
    ]
    for form, field_id, code in cases:
        answer = await browser.post(PAGE, data={**form, "csrf_token": token, "name": "Kept name"})
        assert answer.status_code == 422
        error = field_error(answer.text, field_id)
        assert error.startswith(f"{code}: {EXPLANATIONS[code].meaning}"), error
        assert input_value(answer.text, "add-name") == "Kept name"
        assert input_value(answer.text, "add-client_secret") is None  # a secret is never sent back
        assert form["client_secret"] not in answer.text
    missing = await browser.post(PAGE, data={**add_form(secret_expires_at=""), "csrf_token": token})
    assert missing.status_code == 422
    assert field_error(missing.text, "add-secret_expires_at")
    assert await api_credentials(client, api_key) == []


async def test_a_certificate_is_added_from_a_pem_file_or_a_pfx_file(
    browser: httpx.AsyncClient, client: httpx.AsyncClient, api_key: str
) -> None:
    token = await signed_in_csrf(browser)
    bundle = load(REGISTERED)
    pem = await browser.post(
        PAGE,
        data={
            "tenant_id": sv.CONTOSO_TENANT,
            "client_id": sv.CERTIFICATE_APP,
            "kind": "certificate",
            "csrf_token": token,
        },
        files={"certificate": ("app.pem", bundle.pem.encode(), "application/x-pem-file")},
    )
    assert pem.status_code == 303, pem.text
    listed = await browser.get(PAGE)
    assert f"Certificate {bundle.thumbprint}" in listed.text
    credential = (await api_credentials(client, api_key))[0]
    deleted = await client.delete(f"{CREDENTIALS}/{credential['credential_id']}", headers=headers(api_key))
    assert deleted.status_code == 204

    pfx = base64.b64decode(bundle.pkcs12("pfx-password"))
    sent = {"tenant_id": sv.CONTOSO_TENANT, "client_id": sv.CERTIFICATE_APP, "kind": "certificate"}
    wrong = await browser.post(
        PAGE,
        data={**sent, "certificate_password": "wrong", "csrf_token": token},
        files={"certificate": ("app.pfx", pfx, "application/x-pkcs12")},
    )
    assert wrong.status_code == 422
    assert field_error(wrong.text, "add-certificate").startswith(f"{ErrorCode.INVALID_CERTIFICATE}:")
    right = await browser.post(
        PAGE,
        data={**sent, "certificate_password": "pfx-password", "csrf_token": token},
        files={"certificate": ("app.pfx", pfx, "application/x-pkcs12")},
    )
    assert right.status_code == 303, right.text
    assert [c["certificate_thumbprint"] for c in await api_credentials(client, api_key)] == [
        bundle.thumbprint
    ]


async def test_a_binary_upload_full_of_brackets_is_judged_as_a_certificate_not_as_json(
    browser: httpx.AsyncClient,
) -> None:
    token = await signed_in_csrf(browser)
    answer = await browser.post(
        PAGE,
        data={
            "tenant_id": sv.CONTOSO_TENANT,
            "client_id": sv.CERTIFICATE_APP,
            "kind": "certificate",
            "csrf_token": token,
        },
        files={"certificate": ("odd.pfx", b"\x00[{" * 400, "application/x-pkcs12")},
    )
    assert answer.status_code == 422
    assert field_error(answer.text, "add-certificate").startswith(f"{ErrorCode.INVALID_CERTIFICATE}:")


async def test_rename_rotate_and_delete_from_the_credential_page(
    browser: httpx.AsyncClient, client: httpx.AsyncClient, api_key: str
) -> None:
    credential = await create_credential(client, api_key=api_key)
    cid = credential["credential_id"]
    connected = await bulk(client, api_key=api_key, emails=["jim@contoso.com"], credential_id=cid)
    mailbox_id = connected.json()[0]["id"]
    page = await browser.get(f"{PAGE}/{cid}")
    assert page.status_code == 200
    token = csrf_of(page.text)

    empty = await browser.post(f"{PAGE}/{cid}/rename", data={"name": "", "csrf_token": token})
    assert empty.status_code == 422
    assert field_error(empty.text, "rename-name")
    renamed = await browser.post(f"{PAGE}/{cid}/rename", data={"name": "Sales tenant", "csrf_token": token})
    assert renamed.status_code == 303

    refused = await browser.post(
        f"{PAGE}/{cid}/rotate",
        data={
            "kind": "secret",
            "client_secret": "wrong",
            "secret_expires_at": "2031-05-01",
            "csrf_token": token,
        },
    )
    assert refused.status_code == 422
    assert field_error(refused.text, "rotate-client_secret").startswith(f"{ErrorCode.INVALID_CLIENT_SECRET}:")
    (after,) = await api_credentials(client, api_key)
    assert after["secret_expires_at"] == sv.FUTURE  # the old secret stays in force
    assert after["name"] == "Sales tenant"

    unconfirmed = await browser.post(f"{PAGE}/{cid}/delete", data={"csrf_token": token})
    assert unconfirmed.status_code == 422
    assert "tick the box" in unconfirmed.text
    in_use = await browser.post(f"{PAGE}/{cid}/delete", data={"confirm": "yes", "csrf_token": token})
    assert in_use.status_code == 422
    explanation = EXPLANATIONS[ErrorCode.MICROSOFT_GRAPH_CREDENTIAL_IN_USE]
    assert explanation.meaning in in_use.text
    assert len(await api_credentials(client, api_key)) == 1

    disconnected = await client.delete(f"{MAILBOXES}/{mailbox_id}", headers=headers(api_key))
    assert disconnected.status_code == 204
    deleted = await browser.post(f"{PAGE}/{cid}/delete", data={"confirm": "yes", "csrf_token": token})
    assert deleted.status_code == 303
    assert await api_credentials(client, api_key) == []


async def test_mailbox_filters_that_make_no_sense_are_a_400_page(browser: httpx.AsyncClient) -> None:
    for query in (
        "status=nope",
        "type=robot",
        "credential=abc",
        "page=0",
        "page=99999999999",
        "credential=-1",
    ):
        answer = await browser.get(f"/console/mailboxes?{query}")
        assert answer.status_code == 400, query
        assert "were not understood" in answer.text
    fine = await browser.get("/console/mailboxes?address=%25_%5C&domain=@contoso.com&page=7")
    assert fine.status_code == 200
    assert "0 mailboxes" in fine.text


async def test_the_stylesheet_is_served_by_the_service(browser: httpx.AsyncClient) -> None:
    answer = await browser.get("/console/static/console.css")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/css")
    assert ":focus-visible" in answer.text


async def test_microsoft_unreachable_is_said_on_the_form_and_nothing_is_saved(
    browser: httpx.AsyncClient, client: httpx.AsyncClient, api_key: str, microsoft: FakeMicrosoft
) -> None:
    token = await signed_in_csrf(browser)
    microsoft.faults.token_unavailable_rate = 1.0
    answer = await browser.post(PAGE, data={**add_form(name="Kept name"), "csrf_token": token})
    assert answer.status_code == 503
    assert "Microsoft could not be reached. Nothing was saved" in answer.text
    assert input_value(answer.text, "add-name") == "Kept name"
    assert sv.WORKING_SECRET not in answer.text
    microsoft.faults.token_unavailable_rate = 0.0
    assert await api_credentials(client, api_key) == []


async def test_the_console_can_be_left_out(settings: Settings, state: AppState) -> None:
    app = create_app(settings.model_copy(update={"console_enabled": False}), state=state)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://m365connect.test"
    ) as http:
        for path in ("/console/sign-in", "/console/credentials", "/console/static/console.css"):
            assert (await http.get(path)).status_code == 404
