"""The identity platform's error (shared by the token grant and the client-assertion checks)."""

from __future__ import annotations


class AadError(Exception):
    """An identity platform error: HTTP status, OAuth `error`, AADSTS code and message."""

    def __init__(self, status: int, error: str, code: int, message: str) -> None:
        super().__init__(f"AADSTS{code}: {message}")
        self.status, self.error, self.code, self.message = status, error, code, message
