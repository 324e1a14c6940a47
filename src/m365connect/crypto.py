"""Secret box: AES-256-GCM with a key ring. The first key encrypts, every key decrypts.

A sealed value is `version (1 byte) | key id (4 bytes) | nonce (12 bytes) | ciphertext+tag`. The key id is
the first 4 bytes of SHA-256(key), so decryption finds its key without trying them all. The associated
data binds a ciphertext to one row: moved to another row, it no longer decrypts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import stat
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = 1
_KEY_ID_LEN = 4
_NONCE_LEN = 12
_HEADER_LEN = 1 + _KEY_ID_LEN + _NONCE_LEN
KEY_ID_SLICE = (2, _KEY_ID_LEN)  # SQL substr(value, 2, 4): the key id of a stored sealed value


class SecretBoxError(Exception):
    """A sealed value cannot be opened (unknown key, wrong row, tampered) or a key is malformed.

    Messages never hold a key, a secret or a ciphertext: they are printed and logged as they are.
    """


class KeyNotInRing(SecretBoxError):
    """The value was sealed with a key that is not in the ring (a configuration problem, not the row's)."""

    def __init__(self, key_id: bytes) -> None:
        # The key id is 4 bytes of SHA-256(key): it names the key without revealing anything of it.
        super().__init__(f"sealed with key id {key_id.hex()}, which is not in the key ring")
        self.key_id = key_id


class KeyFileMissing(SecretBoxError):
    """No key file, but the database holds secrets sealed with the key it held: never generate another."""

    def __init__(self, path: Path, *, sealed: int) -> None:
        super().__init__(
            f"the key file {path.absolute()} does not exist, but the database holds {sealed} client secrets "
            "sealed with the key it held; restore the file (mode 0600) or set M365CONNECT_ENCRYPTION_KEYS to "
            "that key. A new key would open none of them: if the key is lost for good, put a new one there "
            "deliberately (m365connect encryption generate-key) and have every credential's secret sent again"
        )
        self.path = path


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:_KEY_ID_LEN]


def parse_keys(text: str) -> list[bytes]:
    """Comma-separated base64 keys of exactly 32 bytes each."""
    keys: list[bytes] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            key = base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SecretBoxError("an encryption key is not valid base64") from exc
        if len(key) != 32:
            raise SecretBoxError("an encryption key must be 32 bytes (base64 of 32 random bytes)")
        keys.append(key)
    if not keys:
        raise SecretBoxError("no encryption key given")
    return keys


def generate_key() -> str:
    """A new random key, base64."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def load_or_create_key_file(path: Path) -> list[bytes]:
    """Read the key file, creating it (mode 0600) with one new key the first time."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(generate_key() + "\n")
    return parse_keys(path.read_text().replace("\n", ","))


def key_file_problem(path: Path) -> str | None:
    """Why the key file cannot be used (one line for the operator), or None: an existing file must read and
    parse; a missing one must have a folder that can take it (it is created later, once allowed)."""
    try:
        if path.exists():
            parse_keys(path.read_text().replace("\n", ","))
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. a read-only working directory
        return f"cannot create or read the encryption key file {path}: {exc.strerror or exc}"
    except SecretBoxError as exc:
        return f"invalid configuration: M365CONNECT_KEY_FILE: {path}: {exc}"
    if not os.access(path.parent, os.W_OK):
        return f"cannot create or read the encryption key file {path}: Permission denied"
    return None


def key_file_warning(path: Path) -> str | None:
    """A warning naming the file and the fix when group or others may read or write the key file.

    A warning, not a refusal: the service creates the file 0600 itself, so a wider mode comes from an
    operator's copy or restore; refusing would take a running deployment down at its next restart.
    """
    mode = stat.S_IMODE(path.stat().st_mode)
    if not mode & 0o077:
        return None
    return (
        f"warning: the encryption key file {path} is readable or writable by group or others "
        f"(mode {mode:04o}); fix it with: chmod 600 {path}"
    )


class SecretBox:
    """Seals and opens secrets with a key ring."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise SecretBoxError("no encryption key given")
        self._primary_id = _key_id(keys[0])
        self._ciphers = {_key_id(key): AESGCM(key) for key in keys}

    def seal(self, plaintext: str, *, associated_data: str) -> bytes:
        """Encrypt with the primary key, bound to `associated_data`."""
        nonce = secrets.token_bytes(_NONCE_LEN)
        sealed = self._ciphers[self._primary_id].encrypt(nonce, plaintext.encode(), associated_data.encode())
        return bytes([_VERSION]) + self._primary_id + nonce + sealed

    def open(self, sealed: bytes, *, associated_data: str) -> str:
        """Decrypt with whichever key of the ring sealed it."""
        if len(sealed) <= _HEADER_LEN or sealed[0] != _VERSION:
            raise SecretBoxError("sealed value is malformed")
        cipher = self._ciphers.get(sealed[1 : 1 + _KEY_ID_LEN])
        if cipher is None:
            raise KeyNotInRing(sealed[1 : 1 + _KEY_ID_LEN])
        nonce = sealed[1 + _KEY_ID_LEN : _HEADER_LEN]
        try:
            return cipher.decrypt(nonce, sealed[_HEADER_LEN:], associated_data.encode()).decode()
        except InvalidTag as exc:
            raise SecretBoxError("does not open with its key: moved from another row, or altered") from exc

    def can_open(self, key_id: bytes) -> bool:
        """Whether a value sealed with this key id (bytes 1-4 of a sealed value) can be opened."""
        return key_id in self._ciphers

    def needs_rotation(self, sealed: bytes) -> bool:
        """True when the value was not sealed with the primary key."""
        return sealed[1 : 1 + _KEY_ID_LEN] != self._primary_id


def credential_secret_aad(credential_id: int) -> str:
    """Associated data binding a client secret to its credential row."""
    return f"m365connect:graph_credentials:{credential_id}:client_secret"
