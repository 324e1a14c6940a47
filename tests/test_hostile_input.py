"""Hostile input on both databases: ids past int64, lone surrogates, NULs and other control characters,
strings longer than their column, dates whose UTC conversion overflows. Each is a documented 400 (or the
404 of an unknown id), never a 500, and nothing is saved.

Bodies are sent as JSON text written by `json.dumps` (ASCII escapes), so a lone surrogate travels as the
six characters `\\ud800`, exactly as a hostile client would send it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy import String, func, select

from m365connect.credentials.models import GraphCredential
from m365connect.credentials.schemas import CredentialCreate, CredentialUpdate
from m365connect.mailboxes.models import Mailbox
from m365connect.mailboxes.schemas import BulkAccount
from m365connect.state import AppState
from tests import scenario_values as sv
from tests.factories import BULK, CREDENTIALS, MAILBOXES, create_credential, credential_body
from tests.helpers import assert_generic_error, headers

PAST_INT64 = (2**63, 2**64, 10**30, -(2**63) - 1)
HOSTILE_TEXT = ("\ud800", "Jim \udfff H", "a\x00b", "\x00", "Jim\tH", "Jim\nH", "\x7f", "\x9b")
OVERFLOWING_DATES = ("9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00")


def _raw(body: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for httpx that send this body as ASCII-escaped JSON text."""
    return {"content": json.dumps(body).encode(), "headers": {"content-type": "application/json"}}


async def _send(
    client: httpx.AsyncClient, method: str, url: str, *, api_key: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    extra = _raw(body) if body is not None else {"headers": {}}
    extra["headers"] = {**extra["headers"], **headers(api_key)}
    return await client.request(method, url, **extra)


async def _rows(state: AppState) -> tuple[int, int]:
    """How many credentials and mailboxes are stored."""
    async with state.sessions() as session:
        credentials = await session.scalar(select(func.count()).select_from(GraphCredential))
        mailboxes = await session.scalar(select(func.count()).select_from(Mailbox))
    return int(credentials or 0), int(mailboxes or 0)


TEXT_REFUSED = "must not contain control characters or unpaired surrogates"
OUTSIDE_UTC = "must lie between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z in UTC"


def _assert_bad_request_naming(response: httpx.Response, field: str, reason: str | None = None) -> None:
    assert_generic_error(response, status=400, title="Bad Request")
    detail = response.json()["detail"]
    assert detail.startswith(f"Field '{field}' is invalid: "), detail
    if reason is not None:
        assert detail == f"Field '{field}' is invalid: {reason}"


def _assert_empty_400(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.content == b""


@pytest.mark.parametrize("field", ["tenant_id", "client_id", "client_secret", "name"])
@pytest.mark.parametrize("hostile", HOSTILE_TEXT)
async def test_control_characters_and_surrogates_in_a_credential_are_400(
    client: httpx.AsyncClient, state: AppState, api_key: str, field: str, hostile: str
) -> None:
    response = await _send(
        client, "POST", CREDENTIALS, api_key=api_key, body=credential_body(**{field: hostile})
    )
    _assert_bad_request_naming(response, field, TEXT_REFUSED)
    assert json.dumps(hostile)[1:-1] not in response.text  # never echoed (it may be a secret)
    assert await _rows(state) == (0, 0)


@pytest.mark.parametrize("date", OVERFLOWING_DATES)
async def test_an_expiry_that_overflows_in_utc_is_400(
    client: httpx.AsyncClient, state: AppState, api_key: str, date: str
) -> None:
    response = await _send(
        client, "POST", CREDENTIALS, api_key=api_key, body=credential_body(secret_expires_at=date)
    )
    _assert_bad_request_naming(response, "secret_expires_at", OUTSIDE_UTC)
    assert await _rows(state) == (0, 0)


async def test_the_longest_name_is_accepted_and_one_more_is_400(
    client: httpx.AsyncClient, state: AppState, api_key: str
) -> None:
    too_long = await _send(client, "POST", CREDENTIALS, api_key=api_key, body=credential_body(name="é" * 201))
    _assert_bad_request_naming(too_long, "name")
    assert await _rows(state) == (0, 0)
    longest = "é" * 199 + "\U0001f600"  # 200 characters, one of them outside the BMP (a surrogate pair)
    created = await create_credential(client, api_key=api_key, name=longest)
    assert created["name"] == longest


@pytest.mark.parametrize(
    ("body", "field"),
    [
        *(({"name": hostile}, "name") for hostile in HOSTILE_TEXT),
        ({"name": "n" * 201}, "name"),
        *(
            ({"client_secret": hostile, "secret_expires_at": sv.FUTURE}, "client_secret")
            for hostile in HOSTILE_TEXT
        ),
        *(
            ({"client_secret": sv.WORKING_SECRET_2, "secret_expires_at": date}, "secret_expires_at")
            for date in OVERFLOWING_DATES
        ),
    ],
)
async def test_hostile_updates_are_400_and_change_nothing(
    client: httpx.AsyncClient, state: AppState, api_key: str, body: dict[str, Any], field: str
) -> None:
    created = await create_credential(client, api_key=api_key)
    url = f"{CREDENTIALS}/{created['credential_id']}"
    _assert_bad_request_naming(await _send(client, "PATCH", url, api_key=api_key, body=body), field)
    stored = (await client.get(CREDENTIALS, headers=headers(api_key))).json()["credentials"]
    assert stored == [created]


@pytest.mark.parametrize("credential_id", [*PAST_INT64, 0, -1])
async def test_a_bulk_credential_id_outside_int64_is_an_empty_400(
    client: httpx.AsyncClient, state: AppState, api_key: str, credential_id: int
) -> None:
    await create_credential(client, api_key=api_key)
    body = {"credential_id": credential_id, "accounts": [{"mailbox_email": "jim@contoso.com"}]}
    _assert_empty_400(await _send(client, "POST", BULK, api_key=api_key, body=body))
    assert await _rows(state) == (1, 0)


def _bulk_bodies() -> list[tuple[str, dict[str, Any]]]:
    jim = "jim@contoso.com"
    bodies: list[tuple[str, dict[str, Any]]] = []
    for hostile in HOSTILE_TEXT:
        bodies.append(("mailbox_email", {"mailbox_email": f"{hostile}{jim}"}))
        bodies.append(("display_name", {"mailbox_email": jim, "display_name": hostile}))
    bodies.append(("display_name 257", {"mailbox_email": jim, "display_name": "d" * 257}))
    return bodies


@pytest.mark.parametrize(("case", "account"), _bulk_bodies())
async def test_hostile_bulk_items_are_an_empty_400(
    client: httpx.AsyncClient, state: AppState, api_key: str, case: str, account: dict[str, Any]
) -> None:
    created = await create_credential(client, api_key=api_key)
    body = {"credential_id": created["credential_id"], "accounts": [account]}
    _assert_empty_400(await _send(client, "POST", BULK, api_key=api_key, body=body))
    assert await _rows(state) == (1, 0), case


async def test_hostile_auth_type_is_an_empty_400(
    client: httpx.AsyncClient, state: AppState, api_key: str
) -> None:
    body = {"auth_type": "APP_ONLY\x00", "accounts": [{"mailbox_email": "jim@contoso.com"}]}
    _assert_empty_400(await _send(client, "POST", BULK, api_key=api_key, body=body))
    assert await _rows(state) == (0, 0)


async def test_the_longest_display_name_is_stored_whole(client: httpx.AsyncClient, api_key: str) -> None:
    created = await create_credential(client, api_key=api_key)
    longest = "d" * 255 + "\U0001f600"  # 256 characters: the column's length on both databases
    body = {
        "credential_id": created["credential_id"],
        "accounts": [{"mailbox_email": "jim@contoso.com", "display_name": longest}],
    }
    response = await _send(client, "POST", BULK, api_key=api_key, body=body)
    assert response.status_code == 201, response.text
    mailbox = (await client.get(f"{MAILBOXES}/{response.json()[0]['id']}", headers=headers(api_key))).json()
    assert mailbox["name"] == longest


@pytest.mark.parametrize("path_id", [*PAST_INT64[:3], 0, -1])
async def test_path_ids_outside_int64_answer_like_an_unknown_id(
    client: httpx.AsyncClient, api_key: str, path_id: int
) -> None:
    created = await create_credential(client, api_key=api_key)
    for method, base, body in (
        ("GET", CREDENTIALS, None),  # no GET route for one credential: the same 405 as any id
        ("PATCH", CREDENTIALS, {"name": "x"}),
        ("DELETE", CREDENTIALS, None),
        ("GET", MAILBOXES, None),
        ("DELETE", MAILBOXES, None),
    ):
        unknown = await _send(client, method, f"{base}/999999", api_key=api_key, body=body)
        response = await _send(client, method, f"{base}/{path_id}", api_key=api_key, body=body)
        title = "Method Not Allowed" if unknown.status_code == 405 else "Not Found"
        assert_generic_error(response, status=unknown.status_code, title=title)
        assert unknown.status_code in (404, 405)
    stored = (await client.get(CREDENTIALS, headers=headers(api_key))).json()["credentials"]
    assert stored == [created]


def _column_length(model: type[Any], column: str) -> int | None:
    kind = model.__table__.c[column].type
    assert isinstance(kind, String)
    return kind.length


def _max_length(model: type[Any], field: str) -> int | None:
    """The documented (OpenAPI) maxLength of an optional string field."""
    text, _null = model.model_json_schema()["properties"][field]["anyOf"]
    return int(text["maxLength"]) if "maxLength" in text else None


def test_text_limits_are_the_columns_lengths() -> None:
    assert _column_length(GraphCredential, "name") == _max_length(CredentialCreate, "name")
    assert _column_length(Mailbox, "name") == _max_length(BulkAccount, "display_name")


@given(
    moment=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    offset=st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1),
)
@example(moment=datetime(9999, 12, 31, 23, 59, 59), offset=-60)
@example(moment=datetime(1, 1, 1), offset=60)
@example(moment=datetime(9999, 12, 31, 22, 59, 59), offset=-60)  # the last second: accepted
def test_an_expiry_is_the_same_instant_in_utc_or_refused(moment: datetime, offset: int) -> None:
    text = moment.replace(tzinfo=timezone(timedelta(minutes=offset))).isoformat()
    body = {"client_secret": "s", "secret_expires_at": text}
    try:
        expected: datetime | None = (moment - timedelta(minutes=offset)).replace(tzinfo=UTC)
    except OverflowError:  # the instant lies before year 1 or after year 9999 in UTC
        expected = None
    if expected is None:
        with pytest.raises(ValidationError, match="must lie between 0001-01-01T00:00:00Z"):
            CredentialUpdate.model_validate(body)
    else:
        assert CredentialUpdate.model_validate(body).secret_expires_at == expected
