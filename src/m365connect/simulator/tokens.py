"""HS256 JSON Web Tokens for the simulator's access tokens (encode and verify, hmac + base64)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from typing import Any

_HEADER = {"typ": "JWT", "alg": "HS256"}


class TokenError(ValueError):
    """An access token that is malformed or fails signature verification."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Signs and verifies tokens with a random key held by one simulator instance."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def encode(self, claims: Mapping[str, Any]) -> str:
        """Return the compact JWS of the claims."""
        signing_input = ".".join(
            _b64encode(json.dumps(part, separators=(",", ":")).encode()) for part in (_HEADER, claims)
        )
        return f"{signing_input}.{self._sign(signing_input)}"

    def decode(self, token: str) -> dict[str, Any]:
        """Return the claims of a token signed by this signer; raise TokenError otherwise."""
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("not a compact JWT")
        try:
            header = json.loads(_b64decode(parts[0]))
            claims = json.loads(_b64decode(parts[1]))
        except (ValueError, UnicodeDecodeError) as exc:
            raise TokenError("undecodable JWT") from exc
        if not isinstance(header, dict) or not isinstance(claims, dict) or header.get("alg") != "HS256":
            raise TokenError("unexpected JWT header or payload")
        if not hmac.compare_digest(parts[2].encode(), self._sign(f"{parts[0]}.{parts[1]}").encode()):
            raise TokenError("bad signature")
        return claims

    def _sign(self, signing_input: str) -> str:
        return _b64encode(hmac.new(self._key, signing_input.encode(), hashlib.sha256).digest())
