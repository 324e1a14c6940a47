"""verify_mailboxes against an in-process fake tenant directory served through `$batch`."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from m365connect.microsoft.graph import GraphClient
from m365connect.microsoft.mailbox_verification import (
    LOOKUP_SELECT,
    MailboxVerification,
    lookup_url,
    user_problem,
    user_purpose,
    verify_mailboxes,
)

FAR = 1e9
FILTER = re.compile(r"proxyAddresses/any\(x:x eq '((?:[^']|'')*)'\)")
MAILBOX = re.compile(r"/users/([^/?]+)/mailboxSettings")


def user(uid: str, *proxies: str, enabled: bool = True, kind: str = "Member", **extra: Any) -> dict[str, Any]:
    primary = next((p[5:] for p in proxies if p.startswith("SMTP:")), None)
    fields = {"mail": primary, "displayName": uid.title(), "userPrincipalName": f"{uid}@tenant.test"}
    return (
        {"id": uid, "proxyAddresses": list(proxies), "accountEnabled": enabled, "userType": kind}
        | fields
        | extra
    )


def graph_error(status: int, code: str, message: str = "...") -> tuple[int, dict[str, Any]]:
    return status, {"error": {"code": code, "message": message}}


class Directory:
    """A tenant: users matched on proxyAddresses case-insensitively (as Graph does), mailbox settings."""

    def __init__(self, *users: dict[str, Any]) -> None:
        self.users = list(users)
        self.lookup_errors: dict[str, tuple[int, dict[str, Any]]] = {}  # address -> answer, every time
        self.mailbox_errors: dict[str, tuple[int, dict[str, Any]]] = {}  # user id -> answer
        self.envelopes: list[list[str]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1.0/$batch"
        sent = json.loads(request.content)["requests"]
        assert len(sent) <= 20
        self.envelopes.append([item["url"] for item in sent])
        answers = [(item["id"], *self._answer(item["url"])) for item in reversed(sent)]
        return httpx.Response(
            200, json={"responses": [{"id": i, "status": s, "body": b} for i, s, b in answers]}
        )

    def _answer(self, url: str) -> tuple[int, dict[str, Any]]:
        parts = urlsplit(url)
        query = parse_qs(parts.query)  # decodes %xx, and "+" as a space, as Graph does
        if parts.path == "/users":
            assert query["$select"] == [LOOKUP_SELECT]
            match = FILTER.fullmatch(query["$filter"][0])
            assert match is not None
            wanted = match.group(1).replace("''", "'").lower()
            if wanted.removeprefix("smtp:") in self.lookup_errors:
                return self.lookup_errors[wanted.removeprefix("smtp:")]
            hits = [u for u in self.users if wanted in (p.lower() for p in u["proxyAddresses"])]
            return 200, {"value": hits}
        match = MAILBOX.fullmatch(parts.path)
        assert match is not None
        assert query["$select"] == ["userPurpose"]
        return self.mailbox_errors.get(match.group(1), (200, {"userPurpose": "user"}))

    def probed(self) -> list[str]:
        return [MAILBOX.search(url).group(1) for batch in self.envelopes for url in batch if "mailbox" in url]


JIM = user("jim", "SMTP:Jim@Contoso.com", "smtp:jimmy@contoso.com", "SIP:jim@contoso.com")
PAM = user("pam", "smtp:ALIAS.pam@contoso.com", "SMTP:Pam@Contoso.com")  # primary listed second
OFF = user("off", "SMTP:off@contoso.com", "smtp:off-alias@contoso.com", enabled=False)
GUEST = user("guest", "SMTP:guest@partner.test", kind="Guest")
GUEST_OFF = user("guestoff", "SMTP:guestoff@partner.test", kind="Guest", enabled=False)
NOMAIL = user("nomail", "SMTP:nomail@contoso.com", mail=None)
TWIN_A = user("twina", "SMTP:twin@contoso.com")
TWIN_B = user("twinb", "smtp:twin@contoso.com", "SMTP:b@contoso.com")
ODD = user("odd", "SMTP:o'neil+news@contoso.com")


@pytest.fixture
def tenant() -> Directory:
    return Directory(JIM, PAM, OFF, GUEST, GUEST_OFF, NOMAIL, TWIN_A, TWIN_B, ODD)


@pytest.fixture
async def graph(tenant: Directory) -> AsyncIterator[GraphClient]:
    async def no_sleep(seconds: float) -> None:
        pass

    async with httpx.AsyncClient(transport=httpx.MockTransport(tenant)) as http:
        yield GraphClient(http=http, graph_url="https://graph.test", sleep=no_sleep, max_attempts=2)


async def token(force_refresh: bool) -> str:
    return "token"


async def verify(graph: GraphClient, *addresses: str, probe: bool = False) -> list[MailboxVerification]:
    return await verify_mailboxes(graph, token, addresses, probe_mailbox=probe, deadline=FAR)


@pytest.mark.parametrize(
    ("address", "error", "user_id", "primary"),
    [
        ("jim@contoso.com", None, "jim", "jim@contoso.com"),
        ("jimmy@contoso.com", "WRONG_ALIAS", "jim", "jim@contoso.com"),
        ("pam@contoso.com", None, "pam", "pam@contoso.com"),
        ("alias.pam@contoso.com", "WRONG_ALIAS", "pam", "pam@contoso.com"),
        ("nobody@contoso.com", "MAILBOX_NOT_FOUND", None, None),
        ("twin@contoso.com", "MAILBOX_NOT_FOUND", None, None),  # two users: ambiguous
        ("off@contoso.com", "MAILBOX_DISABLED", "off", "off@contoso.com"),
        # a disabled user's alias: the mailbox-level fact wins over WRONG_ALIAS
        ("off-alias@contoso.com", "MAILBOX_DISABLED", "off", "off@contoso.com"),
        ("guest@partner.test", "NO_EXCHANGE_MAILBOX", "guest", "guest@partner.test"),
        # no mailbox wins over disabled: enabling the account would not help
        ("guestoff@partner.test", "NO_EXCHANGE_MAILBOX", "guestoff", "guestoff@partner.test"),
        ("nomail@contoso.com", "NO_EXCHANGE_MAILBOX", "nomail", "nomail@contoso.com"),
        # OData: ' doubled in the literal; URL: + encoded, or Graph would read a space
        ("o'neil+news@contoso.com", None, "odd", "o'neil+news@contoso.com"),
    ],
)
async def test_lookup_outcomes(graph, address, error, user_id, primary) -> None:
    display_name = user_id.title() if user_id else None
    assert await verify(graph, address) == [
        MailboxVerification(address, error, user_id, primary, display_name)
    ]


def test_lookup_url_escapes_the_odata_literal_then_percent_encodes() -> None:
    url = lookup_url("o'neil+news&co@contoso.com")
    assert url == (
        "/users?$filter=proxyAddresses/any(x:x%20eq%20'smtp:o''neil%2Bnews%26co@contoso.com')"
        f"&$select={LOOKUP_SELECT}"
    )


@pytest.mark.parametrize(
    ("proxies", "mail", "expected"),
    [
        ([], "a@contoso.com", "NO_EXCHANGE_MAILBOX"),  # no Exchange recipient
        (["SMTP:a@contoso.com"], None, "NO_EXCHANGE_MAILBOX"),
        (["SMTP:b@contoso.com"], "a@contoso.com", None),  # `mail` is the primary address too
        (
            ["SMTP:b@contoso.com", "Smtp:a@contoso.com"],
            "b@contoso.com",
            "MAILBOX_NOT_FOUND",
        ),  # neither prefix
        (
            ["SMTP:b@contoso.com", "smtp: a@contoso.com"],
            "b@contoso.com",
            "WRONG_ALIAS",
        ),  # as Microsoft's example
    ],
)
def test_user_problem_edge_cases(proxies, mail, expected) -> None:
    assert user_problem("a@contoso.com", {"proxyAddresses": proxies, "mail": mail}) == expected


async def test_results_keep_input_order_across_full_batches(graph, tenant) -> None:
    tenant.users += [user(f"u{i}", f"SMTP:u{i}@contoso.com") for i in range(45)]
    addresses = [f"u{i}@contoso.com" for i in reversed(range(45))] + ["jimmy@contoso.com"]
    results = await verify(graph, *addresses)
    assert [r.address for r in results] == addresses
    assert [r.user_id for r in results] == [f"u{i}" for i in reversed(range(45))] + ["jim"]
    assert [len(e) for e in tenant.envelopes] == [20, 20, 6]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (graph_error(403, "Authorization_RequestDenied", "Insufficient privileges"), "MISSING_PERMISSIONS"),
        (graph_error(429, "TooManyRequests"), "MICROSOFT_THROTTLED"),
        (graph_error(503, "serviceNotAvailable"), "MICROSOFT_UNAVAILABLE"),
        ((200, {"unexpected": True}), "MICROSOFT_UNAVAILABLE"),
    ],
)
async def test_lookup_errors(graph, tenant, answer, expected) -> None:
    tenant.lookup_errors["jim@contoso.com"] = answer
    [jim, pam] = await verify(graph, "jim@contoso.com", "pam@contoso.com", probe=True)
    assert (jim.error, jim.user_id) == (expected, None)
    assert pam.error is None
    assert tenant.probed() == ["pam"]


PROBE_CASES = [
    (graph_error(404, "MailboxNotEnabledForRESTAPI", "REST API is not yet supported"), "NO_EXCHANGE_MAILBOX"),
    (graph_error(404, "ResourceNotFound", "Resource could not be discovered."), "NO_EXCHANGE_MAILBOX"),
    (graph_error(404, "ErrorInvalidUser", "The requested user is invalid."), "NO_EXCHANGE_MAILBOX"),
    (graph_error(403, "ErrorAccessDenied", "Access to OData is disabled."), "MAILBOX_ACCESS_DENIED"),
    (graph_error(403, "ErrorAccessDenied", "Access is denied. Check credentials..."), "MISSING_PERMISSIONS"),
    (graph_error(429, "ApplicationThrottled"), "MICROSOFT_THROTTLED"),
    ((200, {"userPurpose": {"value": "shared"}}), None),
]


@pytest.mark.parametrize(("answer", "expected"), PROBE_CASES)
async def test_probe_outcomes(graph, tenant, answer, expected) -> None:
    tenant.mailbox_errors["jim"] = answer
    [jim, pam] = await verify(graph, "jim@contoso.com", "pam@contoso.com", probe=True)
    assert (jim.error, jim.user_id, jim.primary_email) == (expected, "jim", "jim@contoso.com")
    assert pam.error is None


@pytest.mark.parametrize(("answer", "expected"), PROBE_CASES)
async def test_probe_off_sends_no_mailbox_request(graph, tenant, answer, expected) -> None:
    tenant.mailbox_errors["jim"] = answer
    [jim] = await verify(graph, "jim@contoso.com", probe=False)
    assert jim.error is None
    assert tenant.probed() == []


async def test_probe_every_exchange_recipient_in_full_batches(graph, tenant) -> None:
    """Aliases and disabled accounts are probed too: their mailbox type comes before WRONG_ALIAS."""
    tenant.users += [user(f"u{i}", f"SMTP:u{i}@contoso.com") for i in range(25)]
    failing = ["jimmy@contoso.com", "off@contoso.com", "guest@partner.test", "nobody@contoso.com"]
    addresses = failing + [f"u{i}@contoso.com" for i in range(25)]
    results = await verify(graph, *addresses, probe=True)
    assert [r.error for r in results[:4]] == [
        "WRONG_ALIAS",
        "MAILBOX_DISABLED",
        "NO_EXCHANGE_MAILBOX",
        "MAILBOX_NOT_FOUND",
    ]
    assert all(r.error is None for r in results[4:])
    assert tenant.probed() == ["jim", "off"] + [f"u{i}" for i in range(25)]
    assert [len(e) for e in tenant.envelopes] == [20, 9, 20, 7]  # lookups, then probes


def purpose(value: Any) -> tuple[int, dict[str, Any]]:
    return 200, {"userPurpose": value}


@pytest.mark.parametrize(
    ("answer", "enabled", "error", "mailbox_type"),
    [
        (purpose("user"), True, None, "user"),
        (purpose("user"), False, "MAILBOX_DISABLED", "user"),
        # Exchange creates shared mailboxes with sign-in blocked; app-only sendMail works from them
        (purpose("shared"), False, None, "shared"),
        (purpose("shared"), True, None, "shared"),
        (purpose({"value": "Shared"}), False, None, "shared"),  # the older complex form, any case
        (purpose("room"), False, "UNSUPPORTED_MAILBOX_TYPE", None),
        (purpose("room"), True, "UNSUPPORTED_MAILBOX_TYPE", None),  # a Teams Rooms account is enabled
        (purpose("equipment"), False, "UNSUPPORTED_MAILBOX_TYPE", None),
        (purpose("linked"), True, "UNSUPPORTED_MAILBOX_TYPE", None),
        (purpose("others"), True, "UNSUPPORTED_MAILBOX_TYPE", None),
        (purpose("unknownFutureValue"), True, "UNSUPPORTED_MAILBOX_TYPE", None),
        # a 200 that does not say: as without the probe
        ((200, {}), True, None, None),
        ((200, {}), False, "MAILBOX_DISABLED", None),
        (purpose(None), False, "MAILBOX_DISABLED", None),
    ],
)
async def test_mailbox_type_rules(graph, tenant, answer, enabled, error, mailbox_type) -> None:
    tenant.users.append(user("box", "SMTP:box@contoso.com", enabled=enabled))
    tenant.mailbox_errors["box"] = answer
    [box] = await verify(graph, "box@contoso.com", probe=True)
    assert (box.error, box.mailbox_type, box.user_id) == (error, mailbox_type, "box")


async def test_without_the_probe_the_type_is_unknown_and_a_disabled_account_is_disabled(
    graph, tenant
) -> None:
    """No MailboxSettings.Read: a shared mailbox, a room and a disabled user look alike in the directory."""
    tenant.users.append(user("shared", "SMTP:shared@contoso.com", enabled=False, assignedLicenses=[]))
    tenant.mailbox_errors["shared"] = purpose("shared")
    [shared, jim] = await verify(graph, "shared@contoso.com", "jim@contoso.com", probe=False)
    assert (shared.error, shared.mailbox_type) == ("MAILBOX_DISABLED", None)
    assert (jim.error, jim.mailbox_type) == (None, None)
    assert tenant.probed() == []


@pytest.mark.parametrize(
    ("address", "answer", "error"),
    [
        # the mailbox type is a mailbox-level fact: it comes before WRONG_ALIAS
        ("off-alias@contoso.com", purpose("shared"), "WRONG_ALIAS"),
        ("off-alias@contoso.com", purpose("room"), "UNSUPPORTED_MAILBOX_TYPE"),
        ("off-alias@contoso.com", purpose("user"), "MAILBOX_DISABLED"),
        ("off-alias@contoso.com", graph_error(404, "MailboxNotEnabledForRESTAPI"), "NO_EXCHANGE_MAILBOX"),
        # the probe's failure comes before the type and the account state
        (
            "off@contoso.com",
            graph_error(403, "ErrorAccessDenied", "Access to OData is disabled."),
            "MAILBOX_ACCESS_DENIED",
        ),
    ],
)
async def test_mailbox_type_precedence(graph, tenant, address, answer, error) -> None:
    tenant.mailbox_errors["off"] = answer
    [off] = await verify(graph, address, probe=True)
    assert off.error == error
    assert off.primary_email == "off@contoso.com"


def test_guest_answers_no_mailbox_whatever_the_probe_says() -> None:
    guest = {"proxyAddresses": ["SMTP:a@contoso.com"], "mail": "a@contoso.com", "userType": "Guest"}
    assert user_problem("a@contoso.com", guest, purpose="shared") == "NO_EXCHANGE_MAILBOX"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"userPurpose": "shared"}, "shared"),
        ({"userPurpose": {"value": "Room"}}, "room"),
        ({"userPurpose": ""}, None),
        ({"userPurpose": 3}, None),
        ({"timeZone": "UTC"}, None),
        (None, None),
    ],
)
def test_user_purpose_parses_both_documented_forms(body, expected) -> None:
    assert user_purpose(body) == expected
