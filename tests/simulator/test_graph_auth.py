"""Graph bearer-token checks: every malformed, foreign, expired or misdirected token is a 401."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from m365connect.simulator import FakeMicrosoft
from m365connect.simulator.tokens import TokenSigner

from .example import APPS, CONTOSO


def _signed(fake: FakeMicrosoft, signer: TokenSigner | None = None, **changes: Any) -> dict[str, str]:
    now = int(time.time())
    claims = {"aud": "https://graph.microsoft.com", "tid": CONTOSO, "appid": APPS["connector"].client_id}
    claims |= {"roles": ["User.Read.All"], "iat": now, "nbf": now, "exp": now + 3599, **changes}
    token = (signer or fake.token_signer).encode(claims)
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Access token is empty."),
        ({"Authorization": "Basic abc"}, "Access token is empty."),
        ({"Authorization": "Bearer not-a-jwt"}, "CompactToken parsing failed with error code: 80049217"),
        ("wrong_key", "Access token validation failure."),
        ("expired", "Access token has expired or is not yet valid."),
        ("not_yet", "Access token has expired or is not yet valid."),
        ("audience", "Access token validation failure. Invalid audience."),
        ("tenant", "Access token validation failure."),
    ],
)
def test_bad_tokens_are_401_invalid_authentication_token(
    client: httpx.Client, fake: FakeMicrosoft, headers: dict[str, str] | str, message: str
) -> None:
    now = int(time.time())
    crafted = {
        "wrong_key": lambda: _signed(fake, TokenSigner()),
        "expired": lambda: _signed(fake, exp=now - 1),
        "not_yet": lambda: _signed(fake, nbf=now + 3600),
        "audience": lambda: _signed(fake, aud="https://management.azure.com"),
        "tenant": lambda: _signed(fake, tid=str(uuid.uuid4())),
    }
    response = client.get("/v1.0/users", headers=crafted[headers]() if isinstance(headers, str) else headers)

    error = response.json()["error"]
    assert (response.status_code, error["code"], error["message"]) == (
        401,
        "InvalidAuthenticationToken",
        message,
    )
    assert response.headers["www-authenticate"].startswith('Bearer realm=""')
