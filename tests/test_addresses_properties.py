"""Properties of the bulk address normaliser and planner, over generated input (public behaviour only)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from m365connect.codes import ErrorCode
from m365connect.mailboxes.addresses import normalise, plan
from m365connect.mailboxes.schemas import BulkAccount

# Any text at all, and text that looks like an address (so that most examples get past the syntax check).
ANY_TEXT = st.text()
LOOKS_LIKE_AN_ADDRESS = st.builds(
    lambda local, domain: f"{local}@{domain}",
    st.text(min_size=1, max_size=20),
    st.text(min_size=1, max_size=20),
)
ADDRESSES = st.emails()


def _recase(address: str, flips: list[bool]) -> str:
    """The address with its ASCII letters' case flipped where `flips` says so."""
    return "".join(
        char.swapcase() if char.isascii() and char.isalpha() and flip else char
        for char, flip in zip(address, flips + [False] * len(address), strict=False)
    )


@given(text=ANY_TEXT | LOOKS_LIKE_AN_ADDRESS | ADDRESSES)
def test_normalise_never_raises_and_is_idempotent_and_lowercase(text: str) -> None:
    parsed = normalise(text)
    if parsed is None:
        return
    address, domain = parsed
    assert address == address.lower()
    assert domain == domain.lower()
    assert domain.isascii()
    assert address.endswith(f"@{domain}")
    assert normalise(address) == parsed


@given(address=ADDRESSES)
def test_valid_addresses_are_accepted(address: str) -> None:
    assert normalise(address) is not None


@given(address=ADDRESSES, flips=st.lists(st.booleans(), max_size=80), name=st.none() | st.text(max_size=30))
def test_duplicates_are_found_ignoring_case_and_the_first_one_wins(
    address: str, flips: list[bool], name: str | None
) -> None:
    recased = _recase(address, flips)
    items = plan(
        [
            BulkAccount(mailbox_email=address, display_name=name),
            BulkAccount(mailbox_email=f"  {recased} ", display_name=None),
        ]
    )
    assert [item.error for item in items] == [None, ErrorCode.DUPLICATE_EMAIL]
    expected = normalise(address)
    assert expected is not None
    assert (items[0].address, items[0].domain) == expected
    assert items[1].email == recased.strip()


@given(emails=st.lists(ANY_TEXT | ADDRESSES, max_size=12))
def test_plan_keeps_order_and_answers_every_item(emails: list[str]) -> None:
    items = plan([BulkAccount(mailbox_email=email) for email in emails])
    assert [item.email for item in items] == [email.strip() for email in emails]
    seen: set[str] = set()
    for item in items:
        assert item.error in (None, ErrorCode.INVALID_EMAIL, ErrorCode.DUPLICATE_EMAIL)
        if item.error is None:
            assert item.address is not None
            assert item.address not in seen
            seen.add(item.address)
        else:
            assert item.address is None
