"""The fast path of address checking accepts and normalises exactly as email-validator does."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from m365connect.mailboxes import addresses

reference = addresses.normalise_with_validator  # email-validator alone: what normalise answered before


CORPUS = [
    # accepted in the common form
    "user1@domain1.example",
    "Jim.Halpert@Dunder-Mifflin.COM",
    "a@b.co",
    "x@a.b.c.d.e.f.org",
    "o'brien+tag@example.ie",
    "!#$%&'*+-/=?^_`{|}~@example.com",
    "POSTMASTER@Example.com",
    "1@2.example",
    "a@1a.b2.io",
    "a@" + "b" * 63 + ".com",
    "a" * 64 + "@example.com",
    "a" * 100 + "@example.com",
    "a" * 241 + "@example.com",  # 253 characters
    "a" * 242 + "@example.com",  # 254: the limit
    "a@a--b.example",
    "a@ab--cd.example",
    "a@xn--bcher-kva.example",
    "a@example.local.com",
    "a@localhost.example",
    # refused, or refused by email-validator only
    "a" * 243 + "@example.com",  # 255
    "a@" + "b" * 64 + ".com",
    "a@" + ".".join(["a" * 60] * 5) + ".com",
    "a@b",
    "a@b.c1",
    "a@1.2.3.4",
    "a@[1.2.3.4]",
    "a@[IPv6:::1]",
    "a@b.local",
    "a@x.test",
    "a@x.invalid",
    "a@x.onion",
    "a@4.3.2.1.in-addr.arpa",
    "a@localhost",
    "a..b@example.com",
    ".a@example.com",
    "a.@example.com",
    "a@example..com",
    "a@.example.com",
    "a@example.com.",
    "a@-example.com",
    "a@example-.com",
    "a@exa_mple.com",
    "@example.com",
    "a@",
    "a",
    "",
    "a@@example.com",
    "a@b@example.com",
    '"a b"@example.com',
    '"ab"@example.com',
    "Jim <jim@example.com>",
    "<jim@example.com>",
    " a@example.com",
    "a@example.com ",
    "a b@example.com",
    "a\t@example.com",
    "a\n@example.com",
    # Unicode: always email-validator's
    "josé@example.com",
    "a@bücher.example",
    "a@BÜCHER.example",
    "a@\u212aelvin.example",  # Kelvin sign
    "用户@例子.广告",
    "a@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com",  # full-width
    "a@example\u3002com",
    "a@exam\u00adple.com",
    "a\u0301@example.com",
    "a@e\u200dxample.com",
    "\u212a@example.com",  # Kelvin sign
]


@pytest.mark.parametrize("email", CORPUS)
def test_corpus_gets_the_same_answer(email: str) -> None:
    assert addresses.normalise(email) == reference(email)


def test_the_common_form_takes_the_fast_path() -> None:
    """The benchmark's addresses and ordinary ones never reach email-validator."""
    for email in ("user1@domain1.example", "Jim.Halpert@Dunder-Mifflin.COM", "o'brien+x@mail.example.ie"):
        assert addresses._COMMON_ADDRESS.fullmatch(email) is not None


_ATEXT = "abcXYZ019_!#$%&'*+-/=?^`{|}~"
_TRICKY = _ATEXT + '.@-"<> \t[]:\\,;()' + "éÜ\u00ad\u200d\u3002\uff45\u212a" + "xn"
_label = st.one_of(
    st.text(alphabet="abzAZ09-", min_size=1, max_size=8),  # mostly host names
    st.text(alphabet="abzAZ09-", min_size=60, max_size=66),  # around the 63-character limit
    st.text(alphabet="abzAZ09-_é.", max_size=12),
)


@st.composite
def shaped_addresses(draw: st.DrawFn) -> str:
    """Address-like strings: a local part, "@", dot-separated labels, near every boundary."""
    local = draw(
        st.one_of(st.text(alphabet="abXY09._+-'", min_size=1, max_size=12), st.text(alphabet=_ATEXT + '."'))
    )
    labels = draw(st.lists(_label, min_size=1, max_size=4))
    top = draw(st.sampled_from(["com", "example", "c1", "1", "local", "test", "arpa", "x", "", "Co", "x-y"]))
    return f"{local}@{'.'.join([*labels, top])}"


@settings(max_examples=3000, deadline=None)
@given(st.one_of(st.text(alphabet=_TRICKY, max_size=40), shaped_addresses(), st.emails(), st.text()))
@example("a@b.co")
@example("a@" + "b" * 63 + ".com")
def test_generated_strings_get_the_same_answer(email: str) -> None:
    assert addresses.normalise(email) == reference(email)
