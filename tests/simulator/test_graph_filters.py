"""The users $filter parser on its own: grammar, escaping, case rules and Graph's refusals."""

from __future__ import annotations

from typing import Any

import pytest

from m365connect.simulator.graph_core import GraphError
from m365connect.simulator.graph_filters import parse_filter, proxy_address_equality
from m365connect.simulator.graph_users import ALL_PROPERTIES

JIM: dict[str, Any] = {
    "id": "3cdbdf0e-c0cd-563c-9ac1-a617268f19b9",
    "userPrincipalName": "jim@contoso.com",
    "mail": "jim@contoso.com",
    "displayName": "Jim Halpert",
    "mailNickname": "jim",
    "userType": "Member",
    "accountEnabled": True,
    "proxyAddresses": ["SMTP:jim@contoso.com", "smtp:jimothy@contoso.com", "smtp:o'neil@contoso.com"],
    "otherMails": [],
}


def _matches(text: str, *, advanced: bool = False) -> bool:
    return parse_filter(text, known=ALL_PROPERTIES, advanced=advanced)(JIM)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("proxyAddresses/any(x:x eq 'smtp:jim@contoso.com')", True),  # smtp: matches the SMTP: primary
        ("proxyAddresses/any(x:x eq 'SMTP:JIMOTHY@CONTOSO.COM')", True),
        ("proxyAddresses/any( a : a eq 'smtp:pam@contoso.com' )", False),
        ("proxyAddresses/any(x:x eq 'smtp:o''neil@contoso.com')", True),  # '' escapes '
        ("proxyAddresses/any(x:startsWith(x,'smtp:jimo'))", True),
        ("mail eq 'JIM@contoso.com'", True),
        ("userPrincipalName eq 'pam@contoso.com'", False),
        ("id eq '3CDBDF0E-C0CD-563C-9AC1-A617268F19B9'", True),
        ("mail eq 'x@y.com' or userPrincipalName eq 'jim@contoso.com'", True),
        ("mail eq 'jim@contoso.com' and accountEnabled eq false", False),
        ("(mail eq 'x@y.com' or mail eq 'jim@contoso.com') and userType eq 'Member'", True),
        ("mail in ('pam@contoso.com', 'jim@contoso.com')", True),
        ("startsWith(displayName,'jim h')", True),
        ("MAIL EQ 'jim@contoso.com' OR mail eq 'x'", True),
    ],
)
def test_supported_filters(text: str, expected: bool) -> None:
    assert _matches(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("endsWith(mail,'@contoso.com')", True),
        ("mail ne 'jim@contoso.com'", False),
        ("not(mail eq 'pam@contoso.com')", True),
        ("proxyAddresses/any(x:endsWith(x,'@contoso.com'))", True),
        ("not(proxyAddresses/any(x:x eq 'smtp:jimothy@contoso.com'))", False),
    ],
)
def test_advanced_operators_work_with_advanced_queries(text: str, expected: bool) -> None:
    assert _matches(text, advanced=True) is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("endsWith(mail,'@contoso.com')", "Unsupported Query."),
        ("mail ne 'jim@contoso.com'", "Filter operator 'NotEqualsMatch' is not supported."),
        ("not(mail eq 'pam@contoso.com')", "Filter operator 'Not' is not supported."),
        ("proxyAddresses/any(x:endsWith(x,'@contoso.com'))", "Unsupported Query."),
    ],
)
def test_advanced_operators_need_consistency_level_and_count(text: str, message: str) -> None:
    with pytest.raises(GraphError) as caught:
        _matches(text)

    assert (caught.value.status, caught.value.code, caught.value.message) == (
        400,
        "Request_UnsupportedQuery",
        message,
    )


@pytest.mark.parametrize(
    "text",
    [
        "mail eq",
        "mail eq 'unterminated",
        "mail eq 'a' or",
        "(mail eq 'a'",
        "mail gt 'a'",
        "accountEnabled eq 'true'",  # a quoted boolean is a type error in Graph too
        "mail eq true",
        "proxyAddresses/any(x:y eq 'a')",
        "mail eq 'a' extra",
        "",
    ],
)
def test_syntax_and_type_errors_are_invalid_filter_clauses(text: str) -> None:
    with pytest.raises(GraphError) as caught:
        _matches(text, advanced=True)

    assert (caught.value.status, caught.value.code, caught.value.message) == (
        400,
        "BadRequest",
        "Invalid filter clause",
    )


def test_unknown_property_is_a_bad_request() -> None:
    with pytest.raises(GraphError) as caught:
        _matches("shoeSize eq '9'")

    assert (caught.value.code, caught.value.message) == (
        "BadRequest",
        "Could not find a property named 'shoeSize' on type 'microsoft.graph.user'.",
    )


@pytest.mark.parametrize(
    ("text", "prop"),
    [
        ("officeLocation eq 'Scranton'", "officeLocation"),  # a user property, but not filterable
        ("proxyAddresses eq 'smtp:jim@contoso.com'", "proxyAddresses"),  # a collection needs any()
        ("endsWith(displayName,'Halpert')", "displayName"),  # endsWith only on address properties
        ("id ne 'x'", "id"),
    ],
)
def test_unfilterable_properties_are_unsupported_queries(text: str, prop: str) -> None:
    with pytest.raises(GraphError) as caught:
        _matches(text, advanced=True)

    assert caught.value.code == "Request_UnsupportedQuery"
    assert caught.value.message == (
        f"Unsupported or invalid query filter clause specified for property '{prop}' of resource 'User'."
    )


@pytest.mark.parametrize(
    ("text", "literal"),
    [
        ("proxyAddresses/any(x:x eq 'smtp:jim@contoso.com')", "smtp:jim@contoso.com"),
        (" proxyAddresses/any( a : a eq 'SMTP:nate.o''neil@contoso.com' ) ", "SMTP:nate.o'neil@contoso.com"),
        ("proxyAddresses/any(x:y eq 'smtp:a@b.c')", None),
        ("proxyAddresses/any(x:x eq 'smtp:a@b.c') or mail eq 'a@b.c'", None),
        ("mail eq 'a@b.c'", None),
    ],
)
def test_proxy_address_equality_is_only_recognised_when_exact(text: str, literal: str | None) -> None:
    assert proxy_address_equality(text) == literal
