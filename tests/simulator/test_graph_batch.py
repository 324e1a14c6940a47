"""JSON batching: envelope validation, per-item answers in shuffled order, dependsOn and item headers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from m365connect.simulator import FakeMicrosoft

Bearer = Callable[[str], dict[str, str]]


def _lookup(item_id: str, address: str) -> dict[str, Any]:
    url = f"/users?$filter=proxyAddresses/any(x:x eq 'smtp:{address}')&$select=id,mail"
    return {"id": item_id, "method": "GET", "url": url}


def _batch(client: httpx.Client, headers: dict[str, str], requests: list[dict[str, Any]]) -> httpx.Response:
    return client.post("/v1.0/$batch", json={"requests": requests}, headers=headers)


def test_items_are_answered_by_id_in_shuffled_order(client: httpx.Client, bearer: Bearer) -> None:
    addresses = [
        "jim@contoso.com",
        "pam@contoso.com",
        "toby@contoso.com",
        "kevin@contoso.com",
        "nate@contoso.com",
    ]
    addresses += ["accounting@contoso.com", "creed@contoso.com", "jimothy@contoso.com", "nobody@contoso.com"]
    requests = [_lookup(str(i), a) for i, a in enumerate(addresses)]

    response = _batch(client, bearer("connector"), requests)

    assert response.status_code == 200
    answers = response.json()["responses"]
    assert sorted(a["id"] for a in answers) == sorted(r["id"] for r in requests)
    assert [a["id"] for a in answers] != [r["id"] for r in requests]  # seed 0 shuffles these nine
    for answer in answers:
        address = addresses[int(answer["id"])]
        mails = [u["mail"] for u in answer["body"]["value"]]
        expected = {"jimothy@contoso.com": ["jim@contoso.com"], "nobody@contoso.com": []}.get(
            address, [address]
        )
        assert (answer["status"], mails) == (200, expected)
        assert answer["headers"]["Content-Type"].startswith("application/json")


def test_mixed_items_keep_their_own_status_and_errors(
    client: httpx.Client, bearer: Bearer, fake: FakeMicrosoft
) -> None:
    send = {
        "id": "send",
        "method": "POST",
        "url": "/users/pam@contoso.com/sendMail",
        "headers": {"Content-Type": "application/json"},
        "body": {"message": {"toRecipients": [{"emailAddress": {"address": "seed@ours.example"}}]}},
    }
    requests = [
        {
            "id": "settings",
            "method": "GET",
            "url": "/users/kevin@contoso.com/mailboxSettings?$select=userPurpose",
        },
        {"id": "missing", "method": "GET", "url": "/users/creed@contoso.com/mailboxSettings"},
        send,
    ]

    answers = {a["id"]: a for a in _batch(client, bearer("connector"), requests).json()["responses"]}

    assert answers["settings"]["status"] == 403
    assert answers["settings"]["body"]["error"]["message"] == "Access to OData is disabled."
    assert answers["missing"]["body"]["error"]["code"] == "MailboxNotEnabledForRESTAPI"
    assert answers["send"]["status"] == 202
    assert "body" not in answers["send"]
    assert [m["user_principal_name"] for m in fake.sent_mail] == ["pam@contoso.com"]


def test_item_headers_carry_consistency_level(client: httpx.Client, bearer: Bearer) -> None:
    item = {
        "id": "1",
        "method": "GET",
        "url": "/users?$filter=endsWith(mail,'@contoso.com')&$count=true&$select=mail",
        "headers": {"ConsistencyLevel": "eventual"},
    }
    without = {**item, "id": "2", "headers": {}}

    answers = {a["id"]: a for a in _batch(client, bearer("connector"), [item, without]).json()["responses"]}

    assert answers["1"]["body"]["@odata.count"] == 10
    assert answers["2"]["status"] == 400


def test_failed_dependency_is_424_and_stops_the_chain(client: httpx.Client, bearer: Bearer) -> None:
    requests = [
        {"id": "1", "method": "GET", "url": "/users/nobody@contoso.com"},
        {"id": "2", "method": "GET", "url": "/users/jim@contoso.com", "dependsOn": ["1"]},
        {"id": "3", "method": "GET", "url": "/users/pam@contoso.com", "dependsOn": ["2"]},
        {"id": "4", "method": "GET", "url": "/users/pam@contoso.com"},
        {"id": "5", "method": "GET", "url": "/users/toby@contoso.com", "dependsOn": ["4"]},
    ]

    answers = {a["id"]: a for a in _batch(client, bearer("connector"), requests).json()["responses"]}

    assert {k: a["status"] for k, a in answers.items()} == {"1": 404, "2": 424, "3": 424, "4": 200, "5": 200}
    assert answers["2"]["body"]["error"]["code"] == "FailedDependency"


def _batch_error(response: httpx.Response) -> str:
    error = response.json()["error"]
    assert (response.status_code, error["code"]) == (400, "BadRequest")
    return str(error["message"])


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"requests": [_lookup(str(i), "jim@contoso.com") for i in range(21)]}, "at most 20 requests"),
        (
            {"requests": [_lookup("a", "jim@contoso.com"), _lookup("A", "pam@contoso.com")]},
            "Request Id A has to be unique",
        ),
        (
            {
                "requests": [
                    {**_lookup("1", "jim@contoso.com"), "dependsOn": ["2"]},
                    _lookup("2", "pam@contoso.com"),
                ]
            },
            "Invalid dependency",
        ),
        ({"requests": [{"id": "1", "method": "GET"}]}, "Invalid batch payload format."),
        ({"requests": [{"id": 1, "method": "GET", "url": "/users"}]}, "Invalid batch payload format."),
        ({"requests": "all"}, "Invalid batch payload format."),
        ({"calls": []}, "Invalid batch payload format."),
        (
            {
                "requests": [
                    {"id": "1", "method": "POST", "url": "/users/jim@contoso.com/sendMail", "body": {}}
                ]
            },
            "Write request id : 1 does not contain Content-Type header or body.",
        ),
    ],
)
def test_malformed_batches_are_400(
    client: httpx.Client, bearer: Bearer, payload: dict[str, Any], message: str
) -> None:
    response = client.post("/v1.0/$batch", json=payload, headers=bearer("connector"))

    assert message in _batch_error(response)


def test_twenty_items_are_allowed(client: httpx.Client, bearer: Bearer) -> None:
    requests = [_lookup(str(i), "jim@contoso.com") for i in range(20)]

    response = _batch(client, bearer("connector"), requests)

    assert [a["status"] for a in response.json()["responses"]] == [200] * 20


def test_body_that_is_not_json_is_400(client: httpx.Client, bearer: Bearer) -> None:
    response = client.post(
        "/v1.0/$batch", content=b"{", headers={**bearer("connector"), "Content-Type": "application/json"}
    )

    assert _batch_error(response) == "Invalid batch payload format."


def test_envelope_needs_a_valid_token(client: httpx.Client) -> None:
    response = client.post("/v1.0/$batch", json={"requests": [_lookup("1", "jim@contoso.com")]})

    assert (response.status_code, response.json()["error"]["code"]) == (401, "InvalidAuthenticationToken")


def test_items_use_the_envelope_token_roles(client: httpx.Client, bearer: Bearer) -> None:
    response = _batch(
        client,
        bearer("reader"),
        [{"id": "1", "method": "GET", "url": "/users/jim@contoso.com/mailboxSettings"}],
    )

    [answer] = response.json()["responses"]
    assert (answer["status"], answer["body"]["error"]["code"]) == (403, "ErrorAccessDenied")
