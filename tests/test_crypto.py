"""Secret box: AES-GCM, bound to its row, with a key ring for rotation."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from m365connect.crypto import (
    SecretBox,
    SecretBoxError,
    credential_secret_aad,
    generate_key,
    load_or_create_key_file,
    parse_keys,
)


def test_round_trip_and_no_plaintext_in_ciphertext() -> None:
    box = SecretBox(parse_keys(generate_key()))
    sealed = box.seal("very-secret-value", associated_data=credential_secret_aad(7))
    assert b"very-secret-value" not in sealed
    assert box.open(sealed, associated_data=credential_secret_aad(7)) == "very-secret-value"
    assert box.seal("x", associated_data="a") != box.seal("x", associated_data="a")  # fresh nonce


def test_ciphertext_cannot_move_to_another_row() -> None:
    box = SecretBox(parse_keys(generate_key()))
    sealed = box.seal("s", associated_data=credential_secret_aad(1))
    with pytest.raises(SecretBoxError):
        box.open(sealed, associated_data=credential_secret_aad(2))


def test_tampering_is_detected() -> None:
    box = SecretBox(parse_keys(generate_key()))
    sealed = bytearray(box.seal("s", associated_data="a"))
    sealed[-1] ^= 1
    with pytest.raises(SecretBoxError):
        box.open(bytes(sealed), associated_data="a")


def test_key_ring_first_encrypts_all_decrypt() -> None:
    old, new = generate_key(), generate_key()
    sealed_old = SecretBox(parse_keys(old)).seal("s", associated_data="a")
    ring = SecretBox(parse_keys(f"{new},{old}"))
    assert ring.open(sealed_old, associated_data="a") == "s"
    assert ring.needs_rotation(sealed_old)
    sealed_new = ring.seal("s", associated_data="a")
    assert not ring.needs_rotation(sealed_new)
    assert SecretBox(parse_keys(new)).open(sealed_new, associated_data="a") == "s"
    with pytest.raises(SecretBoxError, match="not in the key ring"):
        SecretBox(parse_keys(new)).open(sealed_old, associated_data="a")


@pytest.mark.parametrize("bad", ["", "not base64!", "c2hvcnQ=", ","])
def test_malformed_keys_are_refused(bad: str) -> None:
    with pytest.raises(SecretBoxError):
        parse_keys(bad)


def test_key_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "m365connect.key"
    first = load_or_create_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key_file(path) == first
