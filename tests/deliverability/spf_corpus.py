"""SPF scenarios for example.test: zones and the spf_reason each must produce."""

from __future__ import annotations

from dataclasses import dataclass

from tests.deliverability.support import DOMAIN, MICROSOFT_INCLUDE, txt, zone

PERMERRORS = frozenset(
    {
        "multiple_records",
        "syntax_error",
        "too_many_lookups",
        "too_many_void_lookups",
        "too_many_mx_records",
        "include_without_spf",
        "loop",
    }
)


@dataclass(frozen=True)
class SpfCase:
    """One scenario: the zones served besides Microsoft's, and the expected spf_reason."""

    id: str
    zones: dict[str, str]
    reason: str


def _case(id_: str, reason: str, *lines: str) -> SpfCase:
    """A scenario whose records all live in the example.test zone."""
    return SpfCase(id_, {DOMAIN: zone(*lines)}, reason)


HOSTS = [f"h{n} A 192.0.2.{n}" for n in range(1, 9)]

CASES = [
    _case("direct", "ok", txt("@", f"v=spf1 {MICROSOFT_INCLUDE} -all")),
    _case("softfail", "ok", txt("@", f"v=spf1 ip4:192.0.2.0/24 {MICROSOFT_INCLUDE} ~all")),
    _case("neutral_all", "ok", txt("@", f"V=SPF1 +{MICROSOFT_INCLUDE} ?ALL")),
    _case("no_all", "ok", txt("@", f"v=spf1 {MICROSOFT_INCLUDE}")),
    _case("multi_string", "ok", txt("@", "v=spf1 include:spf.protection.", "outlook.com -all")),
    _case("no_spf_txt", "no_record", txt("@", "google-site-verification=abc"), "www A 192.0.2.1"),
    SpfCase("nxdomain", {"test": zone("other A 192.0.2.1")}, "no_record"),
    _case(
        "two_records",
        "multiple_records",
        txt("@", f"v=spf1 {MICROSOFT_INCLUDE} -all"),
        txt("@", "v=spf1 -all"),
    ),
    _case(
        "lookalikes_ignored",
        "ok",
        txt("@", f"v=spf1 {MICROSOFT_INCLUDE} -all"),
        txt("@", "v=spf10 -all"),
        txt("@", " v=spf1 -all"),
        txt("@", "spf1 -all"),
    ),
    _case(
        "without_microsoft",
        "no_microsoft_include",
        txt("@", "v=spf1 ip4:192.0.2.0/24 mx -all"),
        "@ MX 10 h1",
        *HOSTS,
    ),
    _case("empty_record", "no_microsoft_include", txt("@", "v=spf1")),
    _case(
        "nested_include",
        "ok",
        txt("@", "v=spf1 include:_spf.example.test -all"),
        txt("_spf", "v=spf1 include:_spf2.example.test ~all"),
        txt("_spf2", f"v=spf1 ip4:192.0.2.1 {MICROSOFT_INCLUDE} ?all"),
    ),
    _case(
        "redirect",
        "ok",
        txt("@", "v=spf1 redirect=_spf.example.test"),
        txt("_spf", f"v=spf1 {MICROSOFT_INCLUDE} -all"),
    ),
    _case(
        "redirect_ignored_with_all",
        "no_microsoft_include",
        txt("@", "v=spf1 redirect=_spf.example.test ~all"),
        txt("_spf", f"v=spf1 {MICROSOFT_INCLUDE} -all"),
    ),
    _case("include_after_all", "no_microsoft_include", txt("@", f"v=spf1 -all {MICROSOFT_INCLUDE}")),
    _case("fail_include", "no_microsoft_include", txt("@", f"v=spf1 -{MICROSOFT_INCLUDE} -all")),
    _case("softfail_include", "no_microsoft_include", txt("@", f"v=spf1 ~{MICROSOFT_INCLUDE} -all")),
    _case(
        "neutral_nested_include",
        "no_microsoft_include",
        txt("@", "v=spf1 ?include:_spf.example.test -all"),
        txt("_spf", f"v=spf1 {MICROSOFT_INCLUDE} -all"),
    ),
    _case(
        "ten_lookups",
        "ok",
        txt("@", f"v=spf1 {MICROSOFT_INCLUDE} include:_spf.example.test -all"),
        txt("_spf", "v=spf1 " + " ".join(f"a:h{n}.example.test" for n in range(1, 8)) + " -all"),
        *HOSTS,
    ),
    _case(
        "eleven_lookups_nested",
        "too_many_lookups",
        txt("@", f"v=spf1 {MICROSOFT_INCLUDE} include:_spf.example.test -all"),
        txt("_spf", "v=spf1 " + " ".join(f"a:h{n}.example.test" for n in range(1, 9)) + " -all"),
        *HOSTS,
    ),
    _case(
        "two_void_lookups",
        "ok",
        txt("@", f"v=spf1 a:gone1.example.test mx:gone2.example.test {MICROSOFT_INCLUDE} -all"),
    ),
    _case(
        "three_void_lookups",
        "too_many_void_lookups",
        txt(
            "@",
            "v=spf1 a:gone1.example.test mx:gone2.example.test exists:gone3.example.test "
            f"{MICROSOFT_INCLUDE} -all",
        ),
    ),
    _case("plus_all", "plus_all", txt("@", f"v=spf1 {MICROSOFT_INCLUDE} +all")),
    _case("bare_all", "plus_all", txt("@", f"v=spf1 {MICROSOFT_INCLUDE} all")),
    _case("only_plus_all", "plus_all", txt("@", "v=spf1 +all")),
    _case(
        "plus_all_in_include",
        "plus_all",
        txt("@", f"v=spf1 {MICROSOFT_INCLUDE} include:_spf.example.test -all"),
        txt("_spf", "v=spf1 +all"),
    ),
    _case(
        "plus_all_in_neutral_include",
        "ok",
        txt("@", f"v=spf1 {MICROSOFT_INCLUDE} ?include:_spf.example.test -all"),
        txt("_spf", "v=spf1 +all"),
    ),
    _case(
        "plus_all_by_redirect",
        "plus_all",
        txt("@", "v=spf1 redirect=_spf.example.test"),
        txt("_spf", "v=spf1 +all"),
    ),
    _case(
        "include_without_spf",
        "include_without_spf",
        txt("@", f"v=spf1 include:_spf.example.test {MICROSOFT_INCLUDE} -all"),
        txt("_spf", "not an spf record"),
    ),
    _case(
        "include_nxdomain",
        "include_without_spf",
        txt("@", f"v=spf1 include:gone.example.test {MICROSOFT_INCLUDE} -all"),
    ),
    _case("redirect_without_spf", "include_without_spf", txt("@", "v=spf1 redirect=gone.example.test")),
    _case(
        "include_with_two_records",
        "multiple_records",
        txt("@", f"v=spf1 include:_spf.example.test {MICROSOFT_INCLUDE} -all"),
        txt("_spf", "v=spf1 -all"),
        txt("_spf", "v=spf1 ~all"),
    ),
    _case("include_self", "loop", txt("@", f"v=spf1 {MICROSOFT_INCLUDE} include:example.test -all")),
    _case(
        "include_loop",
        "loop",
        txt("@", f"v=spf1 {MICROSOFT_INCLUDE} include:_a.example.test -all"),
        txt("_a", "v=spf1 include:_b.example.test -all"),
        txt("_b", "v=spf1 include:_a.example.test -all"),
    ),
    _case(
        "redirect_loop",
        "loop",
        txt("@", "v=spf1 redirect=_a.example.test"),
        txt("_a", "v=spf1 redirect=example.test"),
    ),
    _case(
        "diamond_is_no_loop",
        "ok",
        txt("@", f"v=spf1 include:_a.example.test include:_b.example.test {MICROSOFT_INCLUDE} -all"),
        txt("_a", "v=spf1 include:_c.example.test -all"),
        txt("_b", "v=spf1 include:_c.example.test -all"),
        txt("_c", "v=spf1 ip4:192.0.2.1 -all"),
    ),
    _case("unknown_mechanism", "syntax_error", txt("@", f"v=spf1 {MICROSOFT_INCLUDE} ip:192.0.2.1 -all")),
    _case("bad_cidr", "syntax_error", txt("@", f"v=spf1 ip4:192.0.2.0/33 {MICROSOFT_INCLUDE} -all")),
    _case(
        "two_redirects", "syntax_error", txt("@", "v=spf1 redirect=_a.example.test redirect=_b.example.test")
    ),
    _case("syntax_error_after_all", "syntax_error", txt("@", f"v=spf1 {MICROSOFT_INCLUDE} -all foo")),
    _case(
        "syntax_error_nested",
        "syntax_error",
        txt("@", f"v=spf1 {MICROSOFT_INCLUDE} include:_spf.example.test -all"),
        txt("_spf", "v=spf1 a/129 -all"),
    ),
    _case("unknown_modifier_ignored", "ok", txt("@", f"v=spf1 {MICROSOFT_INCLUDE} -all moo=cow%{{d}}")),
    _case(
        "too_many_mx_records",
        "too_many_mx_records",
        txt("@", f"v=spf1 mx {MICROSOFT_INCLUDE} -all"),
        *[f"@ MX {n} h{n % 8 + 1}" for n in range(11)],
        *HOSTS,
    ),
    _case("ptr_counts", "ok", txt("@", f"v=spf1 ptr {MICROSOFT_INCLUDE} -all")),
    _case("exists_ip_macro", "ok", txt("@", f"v=spf1 exists:%{{i}}._spf.%{{d}} {MICROSOFT_INCLUDE} -all")),
    _case(
        "include_domain_macro",
        "ok",
        txt("@", "v=spf1 include:_spf.%{d} -all"),
        txt("_spf", f"v=spf1 {MICROSOFT_INCLUDE} -all"),
    ),
    _case(
        "include_ip_macro", "no_microsoft_include", txt("@", "v=spf1 include:%{ir}._spf.example.test -all")
    ),
]
