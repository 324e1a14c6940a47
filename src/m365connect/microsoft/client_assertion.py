"""The RFC 7523 client assertion that proves a certificate credential to Microsoft's identity platform.

Entra's format (learn.microsoft.com, "Microsoft identity platform certificate credentials"): a JWT signed
with the certificate's private key; header `alg` RS256, `typ` JWT and `x5t` (base64url SHA-1 thumbprint
of the certificate: all a stored credential knows of it, docs/decisions.md); claims `aud` = the token
endpoint URL, `iss` = `sub` = the client id, a unique `jti`, `nbf`, `iat` and `exp` (Entra accepts at
most 10 minutes). Signed with `cryptography` directly: no PyJWT (docs/decisions.md).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
LIFETIME_SECONDS = 600  # Entra's maximum for `exp - nbf`


class AssertionKeyError(ValueError):
    """The stored private key is not a usable RSA key (never carries the key)."""


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515)."""
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def x5t(thumbprint_hex: str) -> str:
    """The `x5t` header value from the certificate's hex SHA-1 thumbprint."""
    return b64url(bytes.fromhex(thumbprint_hex))


def client_assertion(
    *,
    private_key_pem: str,
    thumbprint: str,
    client_id: str,
    token_url: str,
    now: float | None = None,
) -> str:
    """A signed assertion for one token request (a fresh `jti` each time, as Entra may refuse a replay)."""
    try:
        # The key was fully checked (primes, sizes) when the certificate was accepted and it comes back
        # from an authenticated seal, so the checks, ~25 ms of CPU on the event loop, are not redone.
        key = serialization.load_pem_private_key(
            private_key_pem.encode(), password=None, unsafe_skip_rsa_key_validation=True
        )
    except (ValueError, TypeError):
        raise AssertionKeyError("the stored private key does not load") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise AssertionKeyError("the stored private key is not an RSA key")
    issued = int(time.time() if now is None else now)
    header = {"alg": "RS256", "typ": "JWT", "x5t": x5t(thumbprint)}
    claims: dict[str, Any] = {
        "aud": token_url,
        "iss": client_id,
        "sub": client_id,
        "jti": str(uuid.uuid4()),
        "nbf": issued,
        "iat": issued,
        "exp": issued + LIFETIME_SECONDS,
    }
    signing_input = f"{_segment(header)}.{_segment(claims)}".encode()
    signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input.decode()}.{b64url(signature)}"


def _segment(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())
