"""SPF record syntax and macro expansion, without DNS."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from m365connect.deliverability.spf_syntax import (
    Mechanism,
    SpfSyntaxError,
    check_domain_spec,
    expand,
    parse_record,
    spf_records,
)


def test_a_full_record_parses_in_order() -> None:
    record = parse_record(
        "v=spf1  ip4:192.0.2.0/24 ip6:2001:db8::/32 a mx:mail.example.test/24//64 ptr "
        "exists:%{i}.spf.example.test ~include:_spf.example.test -all exp=explain.example.test "
    )
    assert [(m.qualifier, m.name, m.target) for m in record.mechanisms] == [
        ("+", "ip4", None),
        ("+", "ip6", None),
        ("+", "a", None),
        ("+", "mx", "mail.example.test"),
        ("+", "ptr", None),
        ("+", "exists", "%{i}.spf.example.test"),
        ("~", "include", "_spf.example.test"),
        ("-", "all", None),
    ]


def test_evaluation_stops_at_the_first_all() -> None:
    record = parse_record("v=spf1 a -all include:late.example.test ?all")
    assert record.evaluated == (Mechanism("+", "a"), Mechanism("-", "all"))


@pytest.mark.parametrize(
    ("text", "redirect"),
    [
        ("v=spf1 redirect=_spf.example.test", "_spf.example.test"),
        ("v=spf1 redirect=_spf.example.test ~all", None),
        ("v=spf1 -all redirect=_spf.example.test", None),
        ("v=spf1 a", None),
    ],
)
def test_redirect_is_ignored_when_the_record_has_all(text: str, redirect: str | None) -> None:
    assert parse_record(text).effective_redirect == redirect


@pytest.mark.parametrize(
    "text",
    [
        "v=spf1 ip:192.0.2.1",
        "v=spf1 foo",
        "v=spf1 allx",
        "v=spf1 all:example.test",
        "v=spf1 all/24",
        "v=spf1 include",
        "v=spf1 include:",
        "v=spf1 exists",
        "v=spf1 ip4:192.0.2.0/33",
        "v=spf1 ip4:192.0.2.0/024",
        "v=spf1 ip4:192.0.2.256",
        "v=spf1 ip4:192.0.02.1",
        "v=spf1 ip4:2001:db8::1",
        "v=spf1 ip6:192.0.2.1",
        "v=spf1 ip6:2001:db8::/129",
        "v=spf1 ip6:fe80::1%eth0",
        "v=spf1 a/33",
        "v=spf1 mx//129",
        "v=spf1 ptr/24",
        "v=spf1 a:example",
        "v=spf1 a:example.123",
        "v=spf1 a:example.test-",
        "v=spf1 a:example..test",
        "v=spf1 include:" + "x" * 64 + ".test",
        "v=spf1 redirect=a.example.test redirect=b.example.test",
        "v=spf1 exp=a.example.test exp=b.example.test",
        "v=spf1 redirect=",
        "v=spf1 exists:%{x}.example.test",
        "v=spf1 exists:%{c}.example.test",
        "v=spf1 exists:%{d0}.example.test",
        "v=spf1 exists:%.example.test",
        "v=spf1 exists:%{d.example.test",
        "v=spf1 moo=%",
        "v=spf1 include:exämple.test",
        "v=spf1 \t-all",
        "v=spf1 -",
    ],
)
def test_syntax_errors(text: str) -> None:
    with pytest.raises(SpfSyntaxError):
        parse_record(text)


@pytest.mark.parametrize(
    "text",
    [
        "v=spf1",
        "v=spf1 ",
        "v=spf1 a/0 mx//0 a:example.test/32//128",
        "v=spf1 ip4:0.0.0.0/0 ip6:::/0",
        "v=spf1 include:example.test.",
        "v=spf1 include:1-2.example.1-2",
        "v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d}",
        "v=spf1 include:%{d}",
        "v=spf1 moo=cow foo.bar=%{d}%%%_%-",
        "v=spf1 EXISTS:%{D2}.example.test -ALL",
    ],
)
def test_valid_records(text: str) -> None:
    parse_record(text)


def test_spf_records_are_selected_and_joined() -> None:
    txts = [
        (b"v=spf1 include:a.", b"example.test -all"),
        (b"v=spf10 -all",),
        (b" v=spf1 -all",),
        (b"V=SPF1",),
        (b"other",),
    ]
    assert spf_records(txts) == ["v=spf1 include:a.example.test -all", "V=SPF1"]


@pytest.mark.parametrize(
    ("spec", "expanded"),
    [
        ("_spf.%{d}", "_spf.mail.example.test"),
        ("%{d2}", "example.test"),
        ("%{dr}", "test.example.mail"),
        ("%{d1r}", "mail"),
        ("%{o}.x.test", "example.test.x.test"),
        ("%{d-}", "mail.example.test"),
        ("%%%_%-.example.test", "% %20.example.test"),
        ("%{D}", "mail.example.test"),
        ("%{i}.example.test", None),
        ("%{l}.%{d}", None),
    ],
)
def test_macro_expansion(spec: str, expanded: str | None) -> None:
    assert expand(spec, {"d": "mail.example.test", "o": "example.test"}) == expanded


def test_macro_delimiters_and_url_escaping() -> None:
    assert expand("%{d2-}", {"d": "a-b.c-d"}) == "b.c.d"  # split on "-" only, rejoined with "."
    assert expand("%{O}", {"o": "a b"}) == "a%20b"


def test_long_expansions_are_truncated_from_the_left() -> None:
    label = "a" * 60
    expanded = expand("%{d}.example.test", {"d": ".".join([label] * 5)})
    assert expanded is not None
    assert len(expanded) <= 253
    assert expanded.endswith(f"{label}.example.test")


@settings(max_examples=300, database=None, deadline=None)
@given(st.text())
def test_the_parser_never_raises_anything_else(text: str) -> None:
    with contextlib.suppress(SpfSyntaxError):
        parse_record("v=spf1 " + text)


_TERM_PIECES = st.sampled_from(
    ["a", "mx", "ptr", "include", "exists", "ip4", "ip6", "all", "redirect", "exp", "-", "+", "~", "?", ":",
     "/", "//", "=", "%{", "}", "%", ".", "d", "i", "r", "1", "24", "128", "example", "test", " ", "_"]
)  # fmt: skip


@settings(max_examples=500, database=None, deadline=None)
@given(st.lists(_TERM_PIECES, max_size=12).map("".join))
def test_near_valid_records_never_raise_anything_else(text: str) -> None:
    try:
        record = parse_record("v=spf1 " + text)
    except SpfSyntaxError:
        return
    for mechanism in record.mechanisms:
        if mechanism.target is not None:
            expand(mechanism.target, {"d": "example.test", "o": "example.test"})


@settings(max_examples=300, database=None, deadline=None)
@given(st.text())
def test_domain_spec_check_never_raises_anything_else(text: str) -> None:
    with contextlib.suppress(SpfSyntaxError):
        check_domain_spec(text)
