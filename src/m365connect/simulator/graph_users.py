"""Graph /users: list with $filter/$select/$top/$count and paging, get by id or userPrincipalName."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlencode

from m365connect.simulator.directory import DirectoryTenant, DirectoryUser
from m365connect.simulator.graph_core import (
    ODATA_JSON,
    GraphError,
    GraphRequest,
    GraphResponse,
    property_named,
)
from m365connect.simulator.graph_filters import parse_filter, proxy_address_equality
from m365connect.simulator.graph_order import parse_orderby, sort_users

READ_ROLES = frozenset(
    {"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
)
DEFAULT_PROPERTIES = (
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
)
SELECT_ONLY_PROPERTIES = (
    "accountEnabled",
    "assignedLicenses",
    "companyName",
    "department",
    "mailNickname",
    "otherMails",
    "proxyAddresses",
    "usageLocation",
    "userType",
)
ALL_PROPERTIES = DEFAULT_PROPERTIES + SELECT_ONLY_PROPERTIES
_LIST_OPTIONS = frozenset({"$filter", "$select", "$top", "$count", "$skiptoken", "$orderby"})
_DEFAULT_PAGE_SIZE = 100
_SKIPTOKEN_PREFIX = "m365sim:"


def insufficient_privileges() -> GraphError:
    """The directory's 403 for a token without a role that allows the call."""
    return GraphError(
        403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
    )


def user_properties(user: DirectoryUser) -> dict[str, Any]:
    """Every supported property of a user, in Graph's names (null where the scenario has no value)."""
    return {
        "businessPhones": [],
        "displayName": user.display_name,
        "givenName": None,
        "jobTitle": None,
        "mail": user.mail,
        "mobilePhone": None,
        "officeLocation": None,
        "preferredLanguage": None,
        "surname": None,
        "userPrincipalName": user.user_principal_name,
        "id": user.id,
        "accountEnabled": user.account_enabled,
        "assignedLicenses": [{"disabledPlans": [], "skuId": sku} for sku in user.licenses],
        "companyName": None,
        "department": None,
        "mailNickname": user.mail_nickname,
        "otherMails": [],
        "proxyAddresses": list(user.proxy_addresses),
        "usageLocation": "US" if user.licenses else None,
        "userType": user.user_type,
    }


def parse_select(value: str | None) -> list[str] | None:
    """Canonical property names of $select (None without it); '*' selects every property."""
    if value is None or not value.strip():
        return None
    names: list[str] = []
    for raw in (part.strip() for part in value.split(",")):
        if raw == "*":
            return list(ALL_PROPERTIES)
        name = property_named(raw, ALL_PROPERTIES)
        if name is None:
            message = f"Could not find a property named '{raw}' on type 'microsoft.graph.user'."
            raise GraphError(400, "BadRequest", message)
        names.append(name)
    return list(dict.fromkeys(names))


def serialize(user: DirectoryUser, select: list[str] | None) -> dict[str, Any]:
    """A user as Graph returns it: the default property set, or exactly the selected properties.

    Graph adds nothing to a `$select`, not even `id` (user-get, example 3): a client that needs the id
    must select it, and the simulator must not hide a client that forgets to.
    """
    properties = user_properties(user)
    names = DEFAULT_PROPERTIES if select is None else select
    return {name: properties[name] for name in names}


def _context(request: GraphRequest, select: list[str] | None, *, entity: bool) -> str:
    selected = f"({','.join(select)})" if select is not None else ""
    return f"{request.service_root}/$metadata#users{selected}{'/$entity' if entity else ''}"


def _reject_unsupported(options: dict[str, str], allowed: frozenset[str]) -> None:
    for name in options:
        if name not in allowed:
            raise GraphError(400, "BadRequest", f"The query parameter '{name}' is not supported.")


def _page_size(value: str | None) -> int:
    if value is None:
        return _DEFAULT_PAGE_SIZE
    if not value.strip().isdigit() or not 1 <= int(value) <= 999:
        message = f"Invalid page size specified: '{value}'. Must be between 1 and 999 inclusive."
        raise GraphError(400, "Request_BadRequest", message)
    return int(value)


def _offset(skiptoken: str | None) -> int:
    if skiptoken is None:
        return 0
    try:
        decoded = base64.urlsafe_b64decode(skiptoken.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    offset = decoded.removeprefix(_SKIPTOKEN_PREFIX)
    if not decoded.startswith(_SKIPTOKEN_PREFIX) or not offset.isdigit():
        raise GraphError(
            400, "Request_BadRequest", "The specified page token value has expired or is invalid."
        )
    return int(offset)


def _next_link(request: GraphRequest, offset: int) -> str:
    token = base64.urlsafe_b64encode(f"{_SKIPTOKEN_PREFIX}{offset}".encode()).decode()
    pairs = [(k, v) for k, v in request.query if k.lower() != "$skiptoken"] + [("$skiptoken", token)]
    query = urlencode(pairs, quote_via=quote, safe="$'(),:/@=")
    return f"{request.service_root}/users?{query}"


def _count_requested(request: GraphRequest, options: dict[str, str]) -> tuple[bool, bool]:
    """Return ($count=true, advanced query) after checking $count as the directory does."""
    value = options.get("$count", "false").lower()
    if value not in ("true", "false"):
        raise GraphError(400, "BadRequest", f"Invalid value '{options['$count']}' for $count.")
    eventual = request.headers.get("consistencylevel", "").strip().lower() == "eventual"
    if value == "true" and not eventual:
        raise GraphError(400, "Request_BadRequest", "$count is not currently supported.")
    return value == "true", value == "true" and eventual


def _candidates(tenant: DirectoryTenant, filter_text: str | None) -> Sequence[DirectoryUser]:
    """The users a filter can match: the proxy-address index for the lookup every client sends."""
    literal = proxy_address_equality(filter_text) if filter_text else None
    return tenant.users if literal is None else tenant.with_proxy_address(literal)


def list_users(request: GraphRequest) -> GraphResponse:
    """GET /users: the tenant's users matching $filter, one page of $top (default 100)."""
    request.caller.require(READ_ROLES, insufficient_privileges())
    options = request.options()
    _reject_unsupported(options, _LIST_OPTIONS)
    count, advanced = _count_requested(request, options)
    select = parse_select(options.get("$select"))
    predicate = None
    if "$filter" in options:
        predicate = parse_filter(options["$filter"], known=ALL_PROPERTIES, advanced=advanced)
    top, offset = _page_size(options.get("$top")), _offset(options.get("$skiptoken"))
    order = parse_orderby(
        options.get("$orderby"), known=ALL_PROPERTIES, filtered="$filter" in options, advanced=advanced
    )
    users = _candidates(request.caller.tenant, options.get("$filter"))
    matches = sort_users([u for u in users if predicate is None or predicate(user_properties(u))], order)
    body: dict[str, Any] = {"@odata.context": _context(request, select, entity=False)}
    if count:
        body["@odata.count"] = len(matches)
    if offset + top < len(matches):
        body["@odata.nextLink"] = _next_link(request, offset + top)
    body["value"] = [serialize(u, select) for u in matches[offset : offset + top]]
    return GraphResponse(200, body, {"Content-Type": ODATA_JSON})


def get_user(request: GraphRequest, key: str) -> GraphResponse:
    """GET /users/{id | userPrincipalName}: other addresses (aliases, mail != UPN) are 404, as in Graph."""
    request.caller.require(READ_ROLES, insufficient_privileges())
    options = request.options()
    _reject_unsupported(options, frozenset({"$select"}))
    select = parse_select(options.get("$select"))
    user = request.caller.tenant.user(key)
    if user is None:
        message = (
            f"Resource '{key}' does not exist or one of its queried reference-property objects "
            "are not present."
        )
        raise GraphError(404, "Request_ResourceNotFound", message)
    body = {"@odata.context": _context(request, select, entity=True), **serialize(user, select)}
    return GraphResponse(200, body, {"Content-Type": ODATA_JSON})
