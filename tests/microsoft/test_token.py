"""The token client against the bundled simulator over real HTTPS: classification, cache, retries, secrecy."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from tests import scenario_values as sv

from m365connect.codes import ErrorCode
from m365connect.microsoft.error_codes import RETRY
from m365connect.microsoft.error_codes import classify_token_error as classify
from m365connect.microsoft.token import (
    AccessToken,
    ClientCredential,
    TokenClient,
    TokenRejected,
    TokenUnavailable,
    read_claims,
)
from m365connect.simulator import FakeMicrosoft

CLIENT_SECRET_EXPIRED = ErrorCode.CLIENT_SECRET_EXPIRED
CREDENTIAL_REJECTED = ErrorCode.CREDENTIAL_REJECTED
INVALID_CLIENT_ID = ErrorCode.INVALID_CLIENT_ID
INVALID_CLIENT_SECRET = ErrorCode.INVALID_CLIENT_SECRET
INVALID_TENANT_ID = ErrorCode.INVALID_TENANT_ID
WORKING = ClientCredential(sv.CONTOSO_TENANT, sv.WORKING_APP, sv.WORKING_SECRET)
WORKING_ROLES = {"User.Read.All", "Mail.Send", "MailboxSettings.Read"}
WRONG_SECRET = "Wp8Q~c0ntoso.Wrong.Secret_0000000000000"


class Clock:
    """A settable clock for the refresh margin."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Sleeps:
    """Records the waits instead of waiting; `then` runs after each recorded wait."""

    def __init__(self, then: Callable[[], None] | None = None) -> None:
        self.waits: list[float] = []
        self._then = then

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self._then is not None:
            self._then()


@pytest.fixture
async def http(microsoft: FakeMicrosoft) -> AsyncIterator[httpx.AsyncClient]:
    context = ssl.create_default_context(cafile=str(microsoft.ca_path))
    async with httpx.AsyncClient(verify=context, timeout=10) as client:
        yield client


class ObservedRequests:
    """A TokenObserver that keeps the outcome of every request the client sent."""

    def __init__(self) -> None:
        self.outcomes: list[str] = []
        self.seconds: list[float] = []

    def requested(self, outcome: str, seconds: float) -> None:
        self.outcomes.append(outcome)
        self.seconds.append(seconds)


def new_client(
    http: httpx.AsyncClient, microsoft: FakeMicrosoft, *, login_url: str | None = None, **kwargs: Any
) -> TokenClient:
    """A token client on the simulator; waits are recorded, never slept, unless `sleep` is given."""
    kwargs.setdefault("sleep", Sleeps())
    return TokenClient(http=http, login_url=login_url or microsoft.base_url, **kwargs)


# ---------------------------------------------------------------------------------------------- success


async def test_token_carries_roles_tenant_and_expiry(
    http: httpx.AsyncClient, microsoft: FakeMicrosoft
) -> None:
    clock = Clock()
    client = new_client(http, microsoft, clock=clock)
    token = await client.acquire(WORKING)
    assert token.roles == WORKING_ROLES
    assert token.tenant_guid == sv.CONTOSO_TENANT
    assert token.expires_at == clock.now + 3599
    assert read_claims(token.value)["appid"] == sv.WORKING_APP
    assert microsoft.stats.token_requests == 1


async def test_tenant_by_domain_gives_the_tenant_guid(
    http: httpx.AsyncClient, microsoft: FakeMicrosoft
) -> None:
    token = await new_client(http, microsoft).acquire(
        ClientCredential(sv.CONTOSO_DOMAIN, sv.WORKING_APP, sv.WORKING_SECRET)
    )
    assert token.tenant_guid == sv.CONTOSO_TENANT


async def test_token_without_roles_claim_has_no_roles(
    http: httpx.AsyncClient, microsoft: FakeMicrosoft
) -> None:
    token = await new_client(http, microsoft).acquire(
        ClientCredential(sv.CONTOSO_TENANT, sv.UNCONSENTED_APP, sv.UNCONSENTED_SECRET)
    )
    assert token.roles is None


# ------------------------------------------------------------------------------------ classification


REFUSALS = {
    "unknown-tenant-guid": (
        sv.UNKNOWN_TENANT,
        sv.WORKING_APP,
        sv.WORKING_SECRET,
        INVALID_TENANT_ID,
        400,
        90002,
    ),
    "unknown-tenant-domain": (
        "nosuch.example.com",
        sv.WORKING_APP,
        sv.WORKING_SECRET,
        INVALID_TENANT_ID,
        400,
        90002,
    ),
    "ill-formed-tenant": ("not_a_tenant", sv.WORKING_APP, sv.WORKING_SECRET, INVALID_TENANT_ID, 400, 900023),
    "unknown-app": (sv.CONTOSO_TENANT, sv.UNKNOWN_APP, sv.WORKING_SECRET, INVALID_CLIENT_ID, 400, 700016),
    "disabled-app": (sv.CONTOSO_TENANT, sv.DISABLED_APP, sv.DISABLED_SECRET, INVALID_CLIENT_ID, 400, 7000112),
    "wrong-secret": (sv.CONTOSO_TENANT, sv.WORKING_APP, WRONG_SECRET, INVALID_CLIENT_SECRET, 401, 7000215),
    "empty-secret": (sv.CONTOSO_TENANT, sv.WORKING_APP, "", INVALID_CLIENT_SECRET, 401, 7000218),
    "expired-secret": (
        sv.CONTOSO_TENANT,
        sv.EXPIRED_APP,
        sv.EXPIRED_SECRET,
        CLIENT_SECRET_EXPIRED,
        401,
        7000222,
    ),
}


@pytest.mark.parametrize(
    ("tenant", "client_id", "secret", "code", "status", "aadsts"), list(REFUSALS.values()), ids=list(REFUSALS)
)
async def test_refusals_are_classified_and_not_retried_or_cached(
    http: httpx.AsyncClient,
    microsoft: FakeMicrosoft,
    tenant: str,
    client_id: str,
    secret: str,
    code: str,
    status: int,
    aadsts: int,
) -> None:
    sleeps = Sleeps()
    client = new_client(http, microsoft, sleep=sleeps)
    credential = ClientCredential(tenant, client_id, secret)
    for attempt in (1, 2):  # a refusal is not cached: fixing it in Entra takes effect at once
        with pytest.raises(TokenRejected) as caught:
            await client.acquire(credential)
        assert (caught.value.code, caught.value.status, caught.value.error_codes) == (code, status, [aadsts])
        assert microsoft.stats.token_requests == attempt
    assert sleeps.waits == []


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        pytest.param(400, {"error": "invalid_request", "error_codes": [90055]}, RETRY, id="90055-throttled"),
        pytest.param(400, {"error": "invalid_request", "error_codes": [50196]}, RETRY, id="50196-loop"),
        pytest.param(
            400,
            {"error": "invalid_grant", "error_codes": [53003]},
            CREDENTIAL_REJECTED,
            id="53003-conditional-access",
        ),
        pytest.param(
            400, {"error": "invalid_request", "error_codes": [999999]}, CREDENTIAL_REJECTED, id="unknown-code"
        ),
        pytest.param(400, {"error": "something_new"}, CREDENTIAL_REJECTED, id="unknown-error"),
        pytest.param(400, None, CREDENTIAL_REJECTED, id="no-body"),
        pytest.param(400, ["invalid_client"], CREDENTIAL_REJECTED, id="body-not-object"),
        pytest.param(400, {"error": "invalid_tenant"}, INVALID_TENANT_ID, id="error-invalid-tenant"),
        pytest.param(
            400, {"error": "unauthorized_client"}, INVALID_CLIENT_ID, id="error-unauthorized-client"
        ),
        pytest.param(401, {"error": "invalid_client"}, INVALID_CLIENT_SECRET, id="error-invalid-client"),
        pytest.param(400, {"error": "temporarily_unavailable"}, RETRY, id="error-temporarily-unavailable"),
        pytest.param(
            401,
            {"error": "invalid_client", "error_codes": [7000222]},
            CLIENT_SECRET_EXPIRED,
            id="code-beats-error",
        ),
        pytest.param(
            400,
            {"error": "invalid_request", "error_codes": ["7000215", 90002]},
            INVALID_TENANT_ID,
            id="non-integer-code-ignored",
        ),
        pytest.param(429, {"error": "invalid_client", "error_codes": [7000215]}, RETRY, id="429"),
        pytest.param(500, None, RETRY, id="500"),
        pytest.param(502, {"error": "invalid_client"}, RETRY, id="502"),
        pytest.param(503, {"error": "temporarily_unavailable", "error_codes": [50033]}, RETRY, id="503"),
        pytest.param(504, "Gateway Timeout", RETRY, id="504"),
    ],
)
def test_classification_table(status: int, body: Any, expected: str) -> None:
    assert classify(status, body) == expected


# ------------------------------------------------------------------------------------------- cache


async def test_second_acquire_is_served_from_the_cache(
    http: httpx.AsyncClient, microsoft: FakeMicrosoft
) -> None:
    client = new_client(http, microsoft)
    first = await client.acquire(WORKING)
    second = await client.acquire(
        ClientCredential(sv.CONTOSO_TENANT.upper(), sv.WORKING_APP.upper(), sv.WORKING_SECRET)
    )
    assert second is first
    assert microsoft.stats.token_requests == 1


async def test_verify_always_asks_microsoft_and_refreshes_the_cache(
    http: httpx.AsyncClient, microsoft: FakeMicrosoft
) -> None:
    client = new_client(http, microsoft)
    cached = await client.acquire(WORKING)
    verified = await client.verify(WORKING)
    again = await client.verify(WORKING)
    assert microsoft.stats.token_requests == 3
    assert len({cached.value, verified.value, again.value}) == 3
    assert await client.acquire(WORKING) is again
    assert microsoft.stats.token_requests == 3


async def test_another_secret_is_another_cache_entry(
    http: httpx.AsyncClient, microsoft: FakeMicrosoft
) -> None:
    client = new_client(http, microsoft)
    rotated = ClientCredential(sv.CONTOSO_TENANT, sv.WORKING_APP, sv.WORKING_SECRET_2)
    first = await client.acquire(WORKING)
    second = await client.acquire(rotated)
    assert microsoft.stats.token_requests == 2
    assert first.value != second.value
    assert await client.acquire(WORKING) is first
    assert await client.acquire(rotated) is second
    assert microsoft.stats.token_requests == 2


async def test_a_secret_revoked_in_entra_is_not_hidden_by_the_cache(
    http: httpx.AsyncClient, microsoft: FakeMicrosoft
) -> None:
    client = new_client(http, microsoft)
    await client.acquire(WORKING)
    with pytest.raises(TokenRejected):
        await client.acquire(ClientCredential(sv.CONTOSO_TENANT, sv.WORKING_APP, WRONG_SECRET))


async def test_forget_drops_one_token_and_clear_drops_all(
    http: httpx.AsyncClient, microsoft: FakeMicrosoft
) -> None:
    client = new_client(http, microsoft)
    fabrikam = ClientCredential(sv.FABRIKAM_TENANT, sv.FABRIKAM_APP, sv.FABRIKAM_SECRET)
    contoso_token = await client.acquire(WORKING)
    fabrikam_token = await client.acquire(fabrikam)
    assert microsoft.stats.token_requests == 2

    client.forget(WORKING)
    assert await client.acquire(fabrikam) is fabrikam_token
    assert microsoft.stats.token_requests == 2
    assert await client.acquire(WORKING) is not contoso_token
    assert microsoft.stats.token_requests == 3

    client.clear()
    await client.acquire(WORKING)
    await client.acquire(fabrikam)
    assert microsoft.stats.token_requests == 5


async def test_token_is_reused_until_five_minutes_before_expiry(
    http: httpx.AsyncClient, microsoft: FakeMicrosoft
) -> None:
    clock = Clock()
    start = clock.now
    client = new_client(http, microsoft, clock=clock)
    first = await client.acquire(WORKING)
    assert first.expires_at == start + 3599

    clock.now = start + 3200  # 399 s left: still fresh
    assert await client.acquire(WORKING) is first
    assert microsoft.stats.token_requests == 1

    clock.now = start + 3400  # 199 s left: inside the 5-minute margin
    refreshed = await client.acquire(WORKING)
    assert refreshed is not first
    assert refreshed.expires_at == clock.now + 3599
    assert microsoft.stats.token_requests == 2


# ----------------------------------------------------------------------------------- single flight


async def test_concurrent_acquires_send_one_request(
    http: httpx.AsyncClient, microsoft: FakeMicrosoft
) -> None:
    microsoft.faults.latency_ms = 30
    client = new_client(http, microsoft)
    tokens = await asyncio.gather(*(client.acquire(WORKING) for _ in range(50)))
    assert microsoft.stats.token_requests == 1
    assert all(token is tokens[0] for token in tokens)


async def test_concurrent_forced_refreshes_of_one_token_send_one_request(
    http: httpx.AsyncClient, microsoft: FakeMicrosoft
) -> None:
    client = new_client(http, microsoft)
    seen = await client.acquire(WORKING)
    microsoft.faults.latency_ms = 30
    tokens = await asyncio.gather(*(client.acquire(WORKING, force_refresh=True) for _ in range(50)))
    assert microsoft.stats.token_requests == 2
    assert tokens[0] is not seen
    assert all(token is tokens[0] for token in tokens)
    assert await client.acquire(WORKING) is tokens[0]


async def test_provider_gives_the_cached_token_or_a_forced_new_one(
    http: httpx.AsyncClient, microsoft: FakeMicrosoft
) -> None:
    client = new_client(http, microsoft)
    provider = client.provider(WORKING)
    first = await provider(False)
    assert await provider(False) == first
    assert await provider(True) != first
    assert microsoft.stats.token_requests == 2


# ------------------------------------------------------------------------------------------ retries


async def test_unavailable_platform_is_retried_then_reported(
    http: httpx.AsyncClient, microsoft: FakeMicrosoft
) -> None:
    microsoft.faults.token_unavailable_rate = 1.0
    sleeps = Sleeps()
    client = new_client(http, microsoft, sleep=sleeps, max_attempts=4)
    with pytest.raises(TokenUnavailable) as caught:
        await client.acquire(WORKING)
    assert microsoft.stats.token_requests == 4
    assert len(sleeps.waits) == 3
    assert all(wait >= 1.0 for wait in sleeps.waits), sleeps.waits  # the platform's default 1 s
    assert sleeps.waits[-1] >= 2.0, sleeps.waits  # exponential backoff: 0.5, 1, 2 s before jitter
    assert caught.value.retry_after > 0
    assert "HTTP 503" in str(caught.value)


async def test_a_transient_failure_then_success_gives_the_token(
    http: httpx.AsyncClient, microsoft: FakeMicrosoft
) -> None:
    microsoft.faults.token_unavailable_rate = 1.0

    def recover() -> None:
        microsoft.faults.token_unavailable_rate = 0.0

    client = new_client(http, microsoft, sleep=Sleeps(then=recover))
    token = await client.acquire(WORKING)
    assert token.roles == WORKING_ROLES
    assert microsoft.stats.token_requests == 2


async def test_throttling_honours_retry_after(http: httpx.AsyncClient, microsoft: FakeMicrosoft) -> None:
    microsoft.faults.token_throttle_rate = 1.0
    sleeps = Sleeps()
    client = new_client(http, microsoft, sleep=sleeps)
    with pytest.raises(TokenUnavailable):
        await client.acquire(WORKING)
    assert microsoft.stats.token_requests == 4
    # The simulator answers 429 with Retry-After: 1; our own first backoff would be 0.5 s.
    assert all(wait >= 1.0 for wait in sleeps.waits), sleeps.waits


async def test_waits_never_exceed_the_cap(http: httpx.AsyncClient, microsoft: FakeMicrosoft) -> None:
    microsoft.faults.token_throttle_rate = 1.0
    sleeps = Sleeps()
    client = new_client(http, microsoft, sleep=sleeps, max_retry_after=0.8)
    with pytest.raises(TokenUnavailable):
        await client.acquire(WORKING)
    assert len(sleeps.waits) == 3
    assert all(0.0 < wait <= 0.8 for wait in sleeps.waits), sleeps.waits


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_network_error_is_retried_then_unavailable(
    http: httpx.AsyncClient, microsoft: FakeMicrosoft
) -> None:
    sleeps, observed = Sleeps(), ObservedRequests()
    client = new_client(
        http, microsoft, login_url=f"https://127.0.0.1:{_closed_port()}", sleep=sleeps, observer=observed
    )
    with pytest.raises(TokenUnavailable) as caught:
        await client.acquire(WORKING)
    assert observed.outcomes == ["unavailable"] * 4
    assert len(sleeps.waits) == 3
    assert "ConnectError" in str(caught.value)
    assert microsoft.stats.token_requests == 0


# ------------------------------------------------------------------------------------------ claims


def _jwt_segment(payload: bytes) -> str:
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "no-dots-at-all",
        "header.@@@@.signature",
        "header..signature",
        f"h.{_jwt_segment(b'not json')}.s",
        f"h.{_jwt_segment(b'[1, 2]')}.s",
        f"h.{_jwt_segment(b'null')}.s",
        f"h.{_jwt_segment(bytes([0xFF, 0xFE, 0x00, 0x7B]))}.s",
        f"h.{_jwt_segment(b'{')}.s",
    ],
)
def test_read_claims_of_garbage_is_empty(garbage: str) -> None:
    assert read_claims(garbage) == {}


def test_read_claims_reads_an_unpadded_payload() -> None:
    claims = {"tid": sv.CONTOSO_TENANT, "roles": ["Mail.Send"]}
    assert read_claims(f"h.{_jwt_segment(json.dumps(claims).encode())}.s") == claims


# ------------------------------------------------------------------------------------------ secrecy


def _exception_texts(exc: BaseException) -> list[str]:
    """str and repr of the exception, its attributes, and every exception chained to it."""
    texts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None:
        texts += [str(seen), repr(seen), repr(seen.args), repr(vars(seen))]
        seen = seen.__cause__ or seen.__context__
    return texts


async def test_secret_never_appears_in_reprs_errors_or_logs(
    http: httpx.AsyncClient, microsoft: FakeMicrosoft, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = new_client(http, microsoft)
    token = await client.acquire(WORKING)
    assert sv.WORKING_SECRET not in repr(WORKING)
    assert sv.WORKING_SECRET not in str(WORKING)
    assert token.value not in repr(token)
    assert isinstance(token, AccessToken)

    wrong = ClientCredential(sv.CONTOSO_TENANT, sv.WORKING_APP, WRONG_SECRET)
    with pytest.raises(TokenRejected) as rejected:
        await client.acquire(wrong)
    unreachable = new_client(http, microsoft, login_url=f"https://127.0.0.1:{_closed_port()}")
    with pytest.raises(TokenUnavailable) as unavailable:
        await unreachable.acquire(wrong)
    microsoft.faults.token_unavailable_rate = 1.0
    with pytest.raises(TokenUnavailable) as refused:
        await client.acquire(wrong)

    for caught in (rejected, unavailable, refused):
        for text in _exception_texts(caught.value):
            assert WRONG_SECRET not in text
    assert WRONG_SECRET not in caplog.text
    assert sv.WORKING_SECRET not in caplog.text
    assert token.value not in caplog.text
