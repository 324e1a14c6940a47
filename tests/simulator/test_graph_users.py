"""Graph /users over HTTPS: authentication, role gate, $filter, $select, paging and Graph's errors."""

from __future__ import annotations

import email.utils
import json
import uuid
from collections.abc import Callable

import httpx
import pytest

from .example import CONTOSO

Bearer = Callable[[str], dict[str, str]]
DEFAULT_KEYS = {
    "@odata.context",
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
}


def _graph_error(response: httpx.Response, status: int, code: str) -> str:
    """Check status, code and Graph's error shape with its request ids; return the message."""
    error = response.json()["error"]
    assert (response.status_code, error["code"]) == (status, code), response.text
    assert set(error["innerError"]) >= {"date", "request-id", "client-request-id"}
    assert error["innerError"]["request-id"] == response.headers["request-id"]
    return str(error["message"])


def _users(client: httpx.Client, headers: dict[str, str], **params: str) -> httpx.Response:
    return client.get("/v1.0/users", params=params, headers=headers)


def test_lookup_by_alias_returns_the_user_with_selected_properties(
    client: httpx.Client, bearer: Bearer
) -> None:
    response = _users(
        client,
        bearer("connector"),
        **{
            "$filter": "proxyAddresses/any(x:x eq 'smtp:jimothy@contoso.com')",
            "$select": "id,displayName,mail,proxyAddresses,accountEnabled,assignedLicenses,userType",
        },
    )

    body = response.json()
    assert response.status_code == 200
    assert body["@odata.context"].endswith(
        "/v1.0/$metadata#users(id,displayName,mail,proxyAddresses,accountEnabled,assignedLicenses,userType)"
    )
    [jim] = body["value"]
    assert set(jim) == {
        "displayName",
        "mail",
        "proxyAddresses",
        "accountEnabled",
        "assignedLicenses",
        "userType",
        "id",
    }
    assert jim["proxyAddresses"][:2] == ["SMTP:jim@contoso.com", "smtp:jimothy@contoso.com"]
    assert jim["id"] == str(uuid.uuid5(uuid.UUID(CONTOSO), "jim@contoso.com"))
    assert jim["assignedLicenses"] == [{"disabledPlans": [], "skuId": "6fd2c87f-b296-42f0-b197-1e91e994b900"}]
    assert (jim["accountEnabled"], jim["userType"]) == (True, "Member")


def test_apostrophe_is_escaped_by_doubling(client: httpx.Client, bearer: Bearer) -> None:
    response = _users(
        client,
        bearer("connector"),
        **{"$filter": "proxyAddresses/any(x:x eq 'smtp:nate.o''neil@contoso.com')"},
    )

    assert [u["userPrincipalName"] for u in response.json()["value"]] == ["nate@contoso.com"]


def test_without_select_only_the_default_properties(client: httpx.Client, bearer: Bearer) -> None:
    response = _users(
        client, bearer("connector"), **{"$filter": "mail eq 'jim@contoso.com' or mail eq 'pam@contoso.com'"}
    )

    users = response.json()["value"]
    assert [u["mail"] for u in users] == ["jim@contoso.com", "pam@contoso.com"]
    assert set(users[0]) == DEFAULT_KEYS - {"@odata.context"}
    assert response.headers["content-type"].startswith("application/json;odata.metadata=minimal")


def test_no_match_is_an_empty_list(client: httpx.Client, bearer: Bearer) -> None:
    response = _users(
        client, bearer("connector"), **{"$filter": "proxyAddresses/any(x:x eq 'smtp:nobody@contoso.com')"}
    )

    assert (response.status_code, response.json()["value"]) == (200, [])


def test_tenants_do_not_see_each_other(client: httpx.Client, bearer: Bearer) -> None:
    response = _users(client, bearer("fabrikam"), **{"$filter": "mail eq 'jim@contoso.com'"})

    assert response.json()["value"] == []


def test_top_pages_with_next_link(client: httpx.Client, bearer: Bearer) -> None:
    first = _users(client, bearer("connector"), **{"$top": "4", "$select": "id"}).json()
    seen = [u["id"] for u in first["value"]]
    link = first["@odata.nextLink"]
    while link:
        page = client.get(link, headers=bearer("connector")).json()
        seen += [u["id"] for u in page["value"]]
        link = page.get("@odata.nextLink")

    assert len(seen) == len(set(seen)) == 12  # every Contoso user exactly once
    assert len(first["value"]) == 4


def test_advanced_query_with_count(client: httpx.Client, bearer: Bearer) -> None:
    response = client.get(
        "/v1.0/users",
        params={"$filter": "endsWith(mail,'@contoso.com')", "$count": "true", "$select": "mail"},
        headers={**bearer("connector"), "ConsistencyLevel": "eventual"},
    )

    body = response.json()
    assert response.status_code == 200
    assert body["@odata.count"] == len(body["value"]) == 10


@pytest.mark.parametrize(
    ("params", "headers", "code", "message"),
    [
        ({"$filter": "endsWith(mail,'@contoso.com')"}, {}, "Request_UnsupportedQuery", "Unsupported Query."),
        (
            {"$filter": "endsWith(mail,'@contoso.com')", "$count": "true"},
            {},
            "Request_BadRequest",
            "$count is not currently supported.",
        ),
        (
            {"$filter": "endsWith(mail,'@contoso.com')"},
            {"ConsistencyLevel": "eventual"},
            "Request_UnsupportedQuery",
            "Unsupported Query.",
        ),
        ({"$filter": "mail eq 'a"}, {}, "BadRequest", "Invalid filter clause"),
        (
            {"$select": "id,shoeSize"},
            {},
            "BadRequest",
            "Could not find a property named 'shoeSize' on type 'microsoft.graph.user'.",
        ),
        (
            {"$top": "1000"},
            {},
            "Request_BadRequest",
            "Invalid page size specified: '1000'. Must be between 1 and 999 inclusive.",
        ),
        (
            {"$search": '"displayName:jim"'},
            {},
            "BadRequest",
            "The query parameter '$search' is not supported.",
        ),
        (
            {"$orderby": "displayName", "$filter": "startsWith(displayName,'J')"},
            {},
            "Request_UnsupportedQuery",
            "Sorting not supported for current query.",
        ),
        (
            {"$orderby": "jobTitle"},
            {},
            "Request_UnsupportedQuery",
            "Sorting not supported for current query.",
        ),
        (
            {"$orderby": "shoeSize"},
            {},
            "BadRequest",
            "Could not find a property named 'shoeSize' on type 'microsoft.graph.user'.",
        ),
        (
            {"$orderby": "displayName up"},
            {},
            "BadRequest",
            "Syntax error at position 14 in 'displayName up'.",
        ),
    ],
)
def test_query_errors(
    client: httpx.Client,
    bearer: Bearer,
    params: dict[str, str],
    headers: dict[str, str],
    code: str,
    message: str,
) -> None:
    response = client.get("/v1.0/users", params=params, headers={**bearer("connector"), **headers})

    assert _graph_error(response, 400, code) == message


def test_repeated_query_option_is_rejected(client: httpx.Client, bearer: Bearer) -> None:
    response = client.get("/v1.0/users?$top=1&$top=2", headers=bearer("connector"))

    assert "specified more than once" in _graph_error(response, 400, "BadRequest")


@pytest.mark.parametrize(
    "key", ["jim@contoso.com", "JIM@CONTOSO.COM", str(uuid.uuid5(uuid.UUID(CONTOSO), "jim@contoso.com"))]
)
def test_get_user_by_upn_or_id(client: httpx.Client, bearer: Bearer, key: str) -> None:
    response = client.get(f"/v1.0/users/{key}", headers=bearer("connector"))

    body = response.json()
    assert response.status_code == 200
    assert set(body) == DEFAULT_KEYS
    assert body["@odata.context"].endswith("/v1.0/$metadata#users/$entity")
    assert body["userPrincipalName"] == "jim@contoso.com"


def test_get_user_with_select_and_parenthesised_key(client: httpx.Client, bearer: Bearer) -> None:
    response = client.get(
        "/v1.0/users('oscar.martinez@contoso.com')?$select=mail", headers=bearer("connector")
    )

    assert response.json()["@odata.context"].endswith("/v1.0/$metadata#users(mail)/$entity")
    assert {k: v for k, v in response.json().items() if k != "@odata.context"} == {
        "mail": "oscar@contoso.com"
    }


@pytest.mark.parametrize("path", ["/v1.0/users", "/v1.0/users/jim@contoso.com"])
def test_select_returns_only_the_selected_properties_not_even_id(
    client: httpx.Client, bearer: Bearer, path: str
) -> None:
    """Graph adds nothing to $select (user-get, example 3): a client that needs the id must ask for it."""
    response = client.get(path, params={"$select": "displayName,mail"}, headers=bearer("connector"))

    body = response.json()
    users = body.get("value", [body])
    assert users
    assert all(set(user) - {"@odata.context"} == {"displayName", "mail"} for user in users)


def _ordered(client: httpx.Client, headers: dict[str, str], **params: str) -> list[str]:
    """Every page of a sorted listing, following @odata.nextLink."""
    page = _users(client, headers, **params).json()
    names = [u["displayName"] for u in page["value"]]
    while "@odata.nextLink" in page:
        page = client.get(page["@odata.nextLink"], headers=headers).json()
        names += [u["displayName"] for u in page["value"]]
    return names


@pytest.mark.parametrize("direction", ["", " asc", " desc", " DESC"])
def test_orderby_display_name_sorts_across_pages(
    client: httpx.Client, bearer: Bearer, direction: str
) -> None:
    names = _ordered(client, bearer("connector"), **{"$orderby": f"displayName{direction}", "$top": "3"})

    expected = sorted(names, key=str.casefold, reverse=direction.strip().lower() == "desc")
    assert len(names) == 12
    assert names == expected
    assert names != _ordered(client, bearer("connector"), **{"$top": "3"})  # scenario order differs


def test_orderby_user_principal_name(client: httpx.Client, bearer: Bearer) -> None:
    response = _users(client, bearer("connector"), **{"$orderby": "userPrincipalName desc"})

    upns = [u["userPrincipalName"] for u in response.json()["value"]]
    assert upns == sorted(upns, key=str.casefold, reverse=True)


def test_orderby_with_filter_needs_the_advanced_query(client: httpx.Client, bearer: Bearer) -> None:
    response = client.get(
        "/v1.0/users",
        params={"$filter": "endsWith(mail,'@contoso.com')", "$orderby": "displayName", "$count": "true"},
        headers={**bearer("connector"), "ConsistencyLevel": "eventual"},
    )

    names = [u["displayName"] for u in response.json()["value"]]
    assert response.status_code == 200
    assert len(names) == response.json()["@odata.count"] == 10
    assert names == sorted(names, key=str.casefold)


def test_graph_answers_carry_graph_headers(client: httpx.Client, bearer: Bearer) -> None:
    """OData-Version, x-ms-ags-diagnostic, request-id, client-request-id (echoed) and Date, as Graph sends."""
    headers = {**bearer("connector"), "client-request-id": "7d1a3c52-0c1e-4c3e-9f55-5a1f6c2b8e11"}
    ok = client.get("/v1.0/users/jim@contoso.com", headers=headers)
    error = client.get("/v1.0/users/nobody@contoso.com", headers=headers)

    for response in (ok, error):
        assert response.headers["OData-Version"] == "4.0"
        assert set(json.loads(response.headers["x-ms-ags-diagnostic"])["ServerInfo"]) >= {"DataCenter"}
        assert uuid.UUID(response.headers["request-id"])
        assert response.headers["client-request-id"] == "7d1a3c52-0c1e-4c3e-9f55-5a1f6c2b8e11"
        assert email.utils.parsedate_to_datetime(response.headers["Date"]).tzinfo is not None


@pytest.mark.parametrize("key", ["jimothy@contoso.com", "oscar@contoso.com", "nobody@contoso.com"])
def test_get_user_by_alias_or_non_upn_address_is_not_found(
    client: httpx.Client, bearer: Bearer, key: str
) -> None:
    response = client.get(f"/v1.0/users/{key}", headers=bearer("connector"))

    message = _graph_error(response, 404, "Request_ResourceNotFound")
    assert message.startswith(f"Resource '{key}' does not exist or one of its queried reference-property")


def test_users_need_user_read_all(client: httpx.Client, bearer: Bearer) -> None:
    listed = client.get("/v1.0/users", headers=bearer("no_roles"))
    single = client.get("/v1.0/users/jim@contoso.com", headers=bearer("no_roles"))

    for response in (listed, single):
        assert _graph_error(response, 403, "Authorization_RequestDenied") == (
            "Insufficient privileges to complete the operation."
        )


def test_request_ids_are_sent_and_client_request_id_echoed(client: httpx.Client, bearer: Bearer) -> None:
    echoed = client.get(
        "/v1.0/users/jim@contoso.com", headers={**bearer("connector"), "client-request-id": "abc-123"}
    )
    fresh = client.get("/v1.0/users/nobody@contoso.com", headers=bearer("connector"))

    assert echoed.headers["client-request-id"] == "abc-123"
    uuid.UUID(echoed.headers["request-id"])
    assert fresh.headers["client-request-id"] == fresh.headers["request-id"]
    assert fresh.json()["error"]["innerError"]["client-request-id"] == fresh.headers["request-id"]
    assert "server" not in echoed.headers


@pytest.mark.parametrize(
    ("method", "path", "status", "code", "message"),
    [
        ("GET", "/v1.0/groups", 400, "BadRequest", "Resource not found for the segment 'groups'."),
        (
            "GET",
            "/v1.0/users/jim@contoso.com/messages",
            400,
            "BadRequest",
            "Resource not found for the segment 'messages'.",
        ),
        (
            "GET",
            "/v1.0/me",
            400,
            "BadRequest",
            "/me request is only valid with delegated authentication flow.",
        ),
        (
            "DELETE",
            "/v1.0/users/jim@contoso.com",
            405,
            "Request_BadRequest",
            "Specified HTTP method is not allowed for the request target.",
        ),
        (
            "GET",
            "/v1.0/users/jim@contoso.com/sendMail",
            405,
            "Request_BadRequest",
            "Specified HTTP method is not allowed for the request target.",
        ),
    ],
)
def test_unknown_routes_and_methods(
    client: httpx.Client, bearer: Bearer, method: str, path: str, status: int, code: str, message: str
) -> None:
    response = client.request(method, path, headers=bearer("connector"))

    assert _graph_error(response, status, code) == message
