"""Header size and JSON nesting limits at the edge (issue 5)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from m365connect.api.edge import JsonDepthScan
from m365connect.app import create_app
from m365connect.mailboxes.models import Mailbox
from m365connect.settings import Settings
from m365connect.state import AppState, open_state
from tests.factories import BULK, CREDENTIALS, create_credential, credential_body
from tests.helpers import assert_generic_error, headers

HEADER_TITLE = "Request Header Fields Too Large"


def nested(depth: int, inner: Any = 1) -> Any:
    """`inner` wrapped in `depth` arrays."""
    value = inner
    for _ in range(depth):
        value = [value]
    return value


def depth_of(value: Any) -> int:
    """The bracket depth of a JSON value (a scalar is 0)."""
    if isinstance(value, list):
        return 1 + max((depth_of(item) for item in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(item) for item in value.values()), default=0)
    return 0


async def _mailbox_count(state: AppState) -> int:
    async with state.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Mailbox)) or 0)


@pytest.fixture
async def small_limits(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with a 2 KiB header limit and a JSON depth limit of 4 (configured, not the defaults)."""
    configured = settings.model_copy(update={"max_header_bytes": 2048, "max_json_depth": 4})
    async with open_state(configured) as state:
        transport = httpx.ASGITransport(app=create_app(configured, state=state), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://m365connect.test") as http:
            yield http


async def test_oversized_headers_are_431_in_the_generic_body(client: httpx.AsyncClient, api_key: str) -> None:
    fits = await client.get(CREDENTIALS, headers={**headers(api_key), "x-padding": "a" * 15_000})
    assert fits.status_code == 200, fits.text
    too_large = await client.get(CREDENTIALS, headers={**headers(api_key), "x-padding": "a" * 16_400})
    assert_generic_error(too_large, status=431, title=HEADER_TITLE)
    assert "x-request-id" in too_large.headers
    # Many small headers count as much as one large one, and health checks are no exception.
    many = {f"x-h{i}": "v" * 100 for i in range(200)}
    assert_generic_error(await client.get("/healthz", headers=many), status=431, title=HEADER_TITLE)


async def test_configured_limits_apply(small_limits: httpx.AsyncClient, api_key: str) -> None:
    refused = await small_limits.get(CREDENTIALS, headers={**headers(api_key), "x-padding": "a" * 2100})
    assert_generic_error(refused, status=431, title=HEADER_TITLE)
    deep = await small_limits.post(
        CREDENTIALS, json={**credential_body(), "x": nested(4)}, headers=headers(api_key)
    )
    assert_generic_error(
        deep, status=400, title="Bad Request", detail="The request body is nested deeper than 4 levels"
    )


async def test_bulk_nesting_past_the_limit_is_an_empty_400_and_saves_nothing(
    client: httpx.AsyncClient, api_key: str, state: AppState
) -> None:
    await create_credential(client, api_key=api_key)
    account = {"mailbox_email": "jim@contoso.com"}
    # {"accounts": [ {...} ], "extra": [[...]]}: the body's depth is 1 + the extra field's depth.
    at_limit = await client.post(
        BULK, json={"accounts": [account], "extra": nested(31)}, headers=headers(api_key)
    )
    assert at_limit.status_code == 201, at_limit.text
    await client.delete(f"/rest/v2/mailboxes/microsoft/{at_limit.json()[0]['id']}", headers=headers(api_key))
    before = await _mailbox_count(state)
    too_deep = await client.post(
        BULK, json={"accounts": [account], "extra": nested(32)}, headers=headers(api_key)
    )
    assert (too_deep.status_code, too_deep.content) == (400, b"")
    assert await _mailbox_count(state) == before


async def test_a_megabyte_of_brackets_is_refused_without_parsing(
    client: httpx.AsyncClient, api_key: str
) -> None:
    body = b"[" * 1_000_000
    json_headers = {**headers(api_key), "content-type": "application/json"}
    bulk = await client.post(BULK, content=body, headers=json_headers)
    assert (bulk.status_code, bulk.content) == (400, b"")
    generic = await client.post(CREDENTIALS, content=body, headers=json_headers)
    assert_generic_error(generic, status=400, title="Bad Request")
    assert "nested deeper than 32" in generic.json()["detail"]


async def test_brackets_inside_strings_do_not_count(client: httpx.AsyncClient, api_key: str) -> None:
    await create_credential(client, api_key=api_key)
    name = '[[[{{{"\\' * 200
    response = await client.post(
        BULK,
        json={"accounts": [{"mailbox_email": "pam@contoso.com", "display_name": name[:250]}]},
        headers=headers(api_key),
    )
    assert response.status_code == 201, response.text


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab\u00e9\n'),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(alphabet='[]{}"\\k', max_size=5), children, max_size=4)
    ),
    max_leaves=40,
)


@given(value=JSON_VALUES, cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
def test_the_depth_scan_agrees_with_the_parser_however_the_body_is_chunked(
    value: Any, cuts: list[int]
) -> None:
    text = json.dumps(value, ensure_ascii=False).encode()
    chunks, start = [], 0
    for cut in sorted(min(c, len(text)) for c in cuts):
        chunks.append(text[start:cut])
        start = cut
    chunks.append(text[start:])
    expected = depth_of(value)
    scan = JsonDepthScan(limit=64)
    assert all(scan.feed(chunk) for chunk in chunks)
    assert (scan.deepest, scan.depth) == (expected, 0)
    if expected:
        tight = JsonDepthScan(limit=expected - 1)
        assert not all(tight.feed(chunk) for chunk in chunks)
