"""Properties of the bulk address normaliser and planner, and of the bulk item schema in front of them,
over generated input (public behaviour only)."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from m365connect.codes import ErrorCode
from m365connect.mailboxes.addresses import normalise, plan
from m365connect.mailboxes.schemas import DISPLAY_NAME_LENGTH, BulkAccount

# Every code point, lone surrogates included (hypothesis leaves those out of text() by default): what a
# JSON body can carry. WIRE_TEXT: what the schema lets through to the planner (no Cc, no Cs).
HOSTILE_CHARS = st.characters(categories=["Cc", "Cs"])
ANY_TEXT = st.text(st.characters(exclude_categories=[]))
WIRE_TEXT = st.text(st.characters(exclude_categories=["Cc", "Cs"]))
# Ordinary text with hostile characters mixed in, so that most examples have one somewhere inside.
SPIKED_TEXT = st.builds(
    lambda head, spike, tail: f"{head}{spike}{tail}", WIRE_TEXT, st.text(HOSTILE_CHARS, min_size=1), WIRE_TEXT
)
# Text that looks like an address (so that most examples get past the syntax check).
LOOKS_LIKE_AN_ADDRESS = st.builds(
    lambda local, domain: f"{local}@{domain}",
    st.text(st.characters(exclude_categories=["Cc", "Cs"]), min_size=1, max_size=20),
    st.text(st.characters(exclude_categories=["Cc", "Cs"]), min_size=1, max_size=20),
)
ADDRESSES = st.emails()


def _recase(address: str, flips: list[bool]) -> str:
    """The address with its ASCII letters' case flipped where `flips` says so."""
    return "".join(
        char.swapcase() if char.isascii() and char.isalpha() and flip else char
        for char, flip in zip(address, flips + [False] * len(address), strict=False)
    )


@given(text=ANY_TEXT | SPIKED_TEXT | LOOKS_LIKE_AN_ADDRESS | ADDRESSES)
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


@given(address=ADDRESSES, flips=st.lists(st.booleans(), max_size=80), name=st.none() | WIRE_TEXT)
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


@given(emails=st.lists(WIRE_TEXT | ADDRESSES, max_size=12))
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


def _refused(text: str) -> bool:
    """The oracle: a control character (Cc: C0, DEL, C1) or a lone surrogate (Cs) anywhere."""
    return any(unicodedata.category(char) in ("Cc", "Cs") for char in text)


@given(text=ANY_TEXT | SPIKED_TEXT | WIRE_TEXT)
def test_the_schema_refuses_exactly_control_characters_and_surrogates(text: str) -> None:
    for fields in ({"mailbox_email": text}, {"mailbox_email": "jim@contoso.com", "display_name": text}):
        if _refused(text):
            with pytest.raises(ValidationError, match="control characters or unpaired surrogates"):
                BulkAccount.model_validate(fields)
        else:
            assert BulkAccount.model_validate(fields).model_dump(exclude_none=True) == fields


@given(name=st.text(st.characters(exclude_categories=["Cc", "Cs"]), min_size=250, max_size=262))
def test_display_names_are_refused_past_the_column_length(name: str) -> None:
    fields = {"mailbox_email": "jim@contoso.com", "display_name": name}
    if len(name) > DISPLAY_NAME_LENGTH:
        with pytest.raises(ValidationError, match=f"at most {DISPLAY_NAME_LENGTH} characters"):
            BulkAccount.model_validate(fields)
    else:
        assert BulkAccount.model_validate(fields).display_name == name
