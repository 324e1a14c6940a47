"""Background verification (issue 11 item 2, API.md 6): each change an administrator makes in the tenant
produces exactly one event and the right `health`; a state that persists, or a storm of 429/503, produces
nothing. Through the simulator over HTTPS, on both databases; the check functions are called as the work
engine calls them, and the on-demand routes through the real ASGI stack."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from m365connect.app import create_app
from m365connect.errors import ServiceUnavailable
from m365connect.health.credential_checks import ask_microsoft, check_credential, store_verdict
from m365connect.health.mailbox_checks import check_mailboxes
from m365connect.health.planner import CREDENTIAL_JOB, MAILBOXES_JOB
from m365connect.health.service import job_kinds
from m365connect.settings import Settings
from m365connect.simulator import FakeMicrosoft
from m365connect.state import AppState, open_state
from m365connect.work.ports import JobRun
from tests import scenario_values as sv
from tests.factories import CREDENTIALS, MAILBOXES, bulk, create_credential
from tests.health_helpers import Tape, connect, credential_row, mailbox_row, set_expiry
from tests.helpers import headers

JIM, PAM = "jim@contoso.com", "pam@contoso.com"
PAST = "2020-01-01T00:00:00Z"


@pytest.fixture
async def tape(state: AppState) -> Tape:
    return Tape(state)


@pytest.fixture
async def connected(client: httpx.AsyncClient, api_key: str, tape: Tape) -> tuple[int, dict[str, int]]:
    """The working Contoso credential with jim and pam connected; the tape starts after them."""
    credential = await create_credential(client, api_key=api_key)
    ids = await connect(client, api_key, [JIM, PAM], credential["credential_id"])
    await tape.new()
    return credential["credential_id"], ids


async def health(client: httpx.AsyncClient, api_key: str, mailbox_id: int) -> dict[str, Any]:
    body = (await client.get(f"{MAILBOXES}/{mailbox_id}", headers=headers(api_key))).json()
    assert body["status"] == "ACTIVE"  # a FAILING mailbox is never disconnected
    result: dict[str, Any] = body["health"]
    return result


def _disable(fake: FakeMicrosoft) -> None:
    fake.change_user("contoso.com", JIM, account_enabled=False)


def _unlicense(fake: FakeMicrosoft) -> None:
    fake.change_user("contoso.com", JIM, assigned_licenses=[])


def _make_alias(fake: FakeMicrosoft) -> None:
    fake.change_user(
        "contoso.com", JIM, proxy_addresses=["SMTP:jim.halpert@contoso.com", "smtp:jim@contoso.com"]
    )


@pytest.mark.parametrize(
    ("change", "code"),
    [(_disable, "MAILBOX_DISABLED"), (_unlicense, "NO_EXCHANGE_MAILBOX"), (_make_alias, "WRONG_ALIAS")],
    ids=["user disabled", "licence removed", "address became an alias"],
)
async def test_a_mailbox_fails_once_and_recovers_once(
    change: Callable[[FakeMicrosoft], None],
    code: str,
    connected: tuple[int, dict[str, int]],
    client: httpx.AsyncClient,
    api_key: str,
    state: AppState,
    microsoft: FakeMicrosoft,
    tape: Tape,
) -> None:
    credential_id, ids = connected
    both = [ids[JIM], ids[PAM]]
    original = microsoft.scenario
    await check_mailboxes(state, credential_id, both)
    assert await tape.new() == []  # nothing changed: nothing to report
    checked = await health(client, api_key, ids[JIM])
    assert checked["state"] == "OK"
    assert checked["checked_at"] is not None

    change(microsoft)
    await check_mailboxes(state, credential_id, both)
    events = await tape.new()
    assert [(kind, data["id"]) for kind, data in events] == [("mailbox.failing", ids[JIM])]
    failing = await health(client, api_key, ids[JIM])
    assert events[0][1]["health"] == failing
    assert (failing["state"], failing["error"]) == ("FAILING", code)
    assert failing["failing_since"] is not None
    assert (await health(client, api_key, ids[PAM]))["state"] == "OK"
    for _ in range(3):  # the state persists: no repeats
        await check_mailboxes(state, credential_id, both)
    assert await tape.new() == []
    assert (await health(client, api_key, ids[JIM]))["failing_since"] == failing["failing_since"]

    microsoft.change_directory(original)  # the admin undoes it (re-enables the user, ...)
    await check_mailboxes(state, credential_id, both)
    events = await tape.new()
    assert [(kind, data["id"]) for kind, data in events] == [("mailbox.recovered", ids[JIM])]
    assert await health(client, api_key, ids[JIM]) == events[0][1]["health"]
    assert events[0][1]["health"]["error"] is None
    assert events[0][1]["health"]["failing_since"] is None
    await check_mailboxes(state, credential_id, both)
    assert await tape.new() == []


async def test_a_mailbox_moved_out_of_the_rbac_scope_is_access_denied(
    client: httpx.AsyncClient, api_key: str, state: AppState, microsoft: FakeMicrosoft, tape: Tape
) -> None:
    credential = await create_credential(
        client, api_key=api_key, client_id=sv.SCOPED_APP, client_secret=sv.SCOPED_SECRET
    )
    ids = await connect(client, api_key, [JIM, PAM], credential["credential_id"])
    await tape.new()
    original = microsoft.scenario
    microsoft.change_tenant(
        "contoso.com", groups=[{"name": "Outbound senders", "members": [PAM, "oscar@contoso.com"]}]
    )
    for _ in range(2):
        await check_mailboxes(state, credential["credential_id"], list(ids.values()))
    assert await tape.types() == [("mailbox.failing", ids[JIM])]
    assert (await health(client, api_key, ids[JIM]))["error"] == "MAILBOX_ACCESS_DENIED"
    assert microsoft.sent_mail == []  # the send probe sends nothing
    microsoft.change_directory(original)
    await check_mailboxes(state, credential["credential_id"], list(ids.values()))
    assert await tape.types() == [("mailbox.recovered", ids[JIM])]


def _expire_at_microsoft(fake: FakeMicrosoft) -> None:
    fake.change_app("contoso.com", sv.WORKING_APP, secrets=[{"value": sv.WORKING_SECRET, "expires_at": PAST}])


def _delete_secret(fake: FakeMicrosoft) -> None:
    fake.change_app("contoso.com", sv.WORKING_APP, secrets=[])


def _disable_app(fake: FakeMicrosoft) -> None:
    fake.change_app("contoso.com", sv.WORKING_APP, enabled=False)


@pytest.mark.parametrize(
    ("change", "status", "event", "code"),
    [
        (_expire_at_microsoft, "EXPIRED", "credential.expired", "CREDENTIAL_EXPIRED"),
        (_delete_secret, "INVALID", "credential.failing", "CREDENTIAL_INVALID"),
        (_disable_app, "INVALID", "credential.failing", "CREDENTIAL_INVALID"),
    ],
    ids=["secret expired at Microsoft", "secret deleted", "app disabled"],
)
async def test_a_refused_credential_fails_with_its_mailboxes_then_recovers(
    change: Callable[[FakeMicrosoft], None],
    status: str,
    event: str,
    code: str,
    connected: tuple[int, dict[str, int]],
    client: httpx.AsyncClient,
    api_key: str,
    state: AppState,
    microsoft: FakeMicrosoft,
    tape: Tape,
) -> None:
    credential_id, ids = connected
    both = sorted(ids.values())
    original = microsoft.scenario
    await check_credential(state, credential_id)
    assert await tape.new() == []

    change(microsoft)
    await check_credential(state, credential_id)
    events = await tape.new()
    assert [(kind, data.get("id", data.get("credential_id"))) for kind, data in events] == [
        (event, credential_id),
        *(("mailbox.failing", mailbox_id) for mailbox_id in both),
    ]
    listed = (await client.get(CREDENTIALS, headers=headers(api_key))).json()["credentials"][0]
    assert listed["status"] == status
    assert events[0][1] == listed  # the credential after the change (no secret in it)
    assert sv.WORKING_SECRET not in str(tape.all)
    for mailbox_id in both:
        assert (await health(client, api_key, mailbox_id))["error"] == code
    for _ in range(2):  # persisting: neither the credential nor its mailboxes report again
        await check_credential(state, credential_id)
        await check_mailboxes(state, credential_id, both)
    assert await tape.new() == []
    assert (await health(client, api_key, ids[JIM]))["error"] == code

    microsoft.change_directory(original)  # a working secret again
    await check_credential(state, credential_id)
    assert await tape.types() == [("credential.recovered", credential_id)]
    assert (await mailbox_row(state, ids[JIM])).next_check_at is not None  # due at once: planned next
    await check_mailboxes(state, credential_id, both)
    assert await tape.types() == [("mailbox.recovered", mailbox_id) for mailbox_id in both]


async def test_a_mailbox_check_finds_the_credential_refused_without_a_cached_token(
    connected: tuple[int, dict[str, int]], state: AppState, microsoft: FakeMicrosoft, tape: Tape
) -> None:
    credential_id, ids = connected
    _delete_secret(microsoft)
    state.tokens.clear()  # another process, or a restart: no token cached
    await check_mailboxes(state, credential_id, [ids[JIM]])
    assert await tape.types() == [
        ("credential.failing", credential_id),
        *(("mailbox.failing", mailbox_id) for mailbox_id in sorted(ids.values())),
    ]
    assert (await mailbox_row(state, ids[JIM])).health_error == "CREDENTIAL_INVALID"


async def test_consent_removed_fails_every_mailbox_for_want_of_permissions(
    connected: tuple[int, dict[str, int]], state: AppState, microsoft: FakeMicrosoft, tape: Tape
) -> None:
    credential_id, ids = connected
    original = microsoft.scenario
    microsoft.change_app("contoso.com", sv.WORKING_APP, roles=[])
    await check_credential(state, credential_id)
    # Microsoft still issues a token (without roles): the credential is VALID, its permissions say why.
    assert await tape.new() == []
    row = await credential_row(state, credential_id)
    assert (row.verification_status, row.granted_permissions) == ("VALID", [])
    await check_mailboxes(state, credential_id, sorted(ids.values()))
    assert await tape.types() == [("mailbox.failing", mailbox_id) for mailbox_id in sorted(ids.values())]
    assert (await mailbox_row(state, ids[PAM])).health_error == "MISSING_PERMISSIONS"
    microsoft.change_directory(original)
    await check_credential(state, credential_id)
    await check_mailboxes(state, credential_id, sorted(ids.values()))
    assert await tape.types() == [("mailbox.recovered", mailbox_id) for mailbox_id in sorted(ids.values())]


@pytest.fixture
async def quick_state(settings: Settings) -> AsyncIterator[AppState]:
    """The service with a 1.5 s Graph budget, so that a storm ends quickly."""
    async with open_state(settings.model_copy(update={"bulk_deadline_seconds": 1.5})) as built:
        yield built


async def test_a_storm_of_429_and_503_changes_no_state(
    connected: tuple[int, dict[str, int]],
    quick_state: AppState,
    microsoft: FakeMicrosoft,
    tape: Tape,
) -> None:
    credential_id, ids = connected
    both = sorted(ids.values())
    _disable(microsoft)
    await check_mailboxes(quick_state, credential_id, both)
    assert await tape.types() == [("mailbox.failing", ids[JIM])]
    before = {mailbox_id: await mailbox_row(quick_state, mailbox_id) for mailbox_id in both}
    credential_before = await credential_row(quick_state, credential_id)
    microsoft.change_user("contoso.com", JIM, account_enabled=True)  # it would recover, but no answer comes
    microsoft.faults.graph_retry_after = 0.05
    for knob in ("graph_throttle_rate", "graph_unavailable_rate"):
        setattr(microsoft.faults, knob, 1.0)
        with pytest.raises(ServiceUnavailable):
            await check_mailboxes(quick_state, credential_id, both)
        setattr(microsoft.faults, knob, 0.0)
    microsoft.faults.token_unavailable_rate = 1.0
    with pytest.raises(ServiceUnavailable):
        await check_credential(quick_state, credential_id)
    quick_state.tokens.clear()
    with pytest.raises(ServiceUnavailable):
        await check_mailboxes(quick_state, credential_id, both)
    assert microsoft.stats.throttled > 0
    assert await tape.new() == []
    for mailbox_id in both:
        after = await mailbox_row(quick_state, mailbox_id)
        assert (after.health_state, after.health_error, after.health_checked_at) == (
            before[mailbox_id].health_state,
            before[mailbox_id].health_error,
            before[mailbox_id].health_checked_at,
        )
    credential_after = await credential_row(quick_state, credential_id)
    assert (credential_after.verification_status, credential_after.checked_at) == (
        credential_before.verification_status,
        credential_before.checked_at,
    )
    microsoft.faults.token_unavailable_rate = 0.0  # the storm passes: the next check sees the recovery
    await check_mailboxes(quick_state, credential_id, both)
    assert await tape.types() == [("mailbox.recovered", ids[JIM])]


async def test_expiry_reminders_at_30_7_and_1_days_once_each_then_expired_once(
    client: httpx.AsyncClient, api_key: str, state: AppState, tape: Tape
) -> None:
    credential_id = (await create_credential(client, api_key=api_key))["credential_id"]
    await tape.new()
    now = datetime.now(UTC)
    reminders: list[int] = []
    for remaining, expected in [
        (timedelta(days=45), None),
        (timedelta(days=29, hours=12), 30),
        (timedelta(days=20), None),
        (timedelta(days=6, hours=23), 7),
        (timedelta(hours=20), 1),
        (timedelta(hours=2), None),
    ]:
        await set_expiry(state, credential_id, now + remaining)
        for _ in range(2):
            await check_credential(state, credential_id)
        events = await tape.new()
        assert [kind for kind, _data in events] == ([] if expected is None else ["credential.expiring"])
        reminders += [data["days_left"] for _kind, data in events]
        if events:
            assert events[0][1]["credential_id"] == credential_id
            assert events[0][1]["expires_in_days"] == (remaining.days)
    assert reminders == [30, 7, 1]
    await set_expiry(state, credential_id, now - timedelta(minutes=5))
    for _ in range(2):
        await check_credential(state, credential_id)
    events = await tape.new()
    assert [kind for kind, _data in events] == ["credential.expired"]
    assert (events[0][1]["status"], events[0][1]["expires_in_days"]) == ("EXPIRED", -1)


async def test_a_secret_first_seen_inside_a_threshold_gets_only_the_smallest_and_a_rotation_starts_again(
    client: httpx.AsyncClient, api_key: str, state: AppState, tape: Tape
) -> None:
    soon = (datetime.now(UTC) + timedelta(days=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    credential_id = (await create_credential(client, api_key=api_key, secret_expires_at=soon))[
        "credential_id"
    ]
    await tape.new()
    await check_credential(state, credential_id)
    assert [data["days_left"] for _kind, data in await tape.new()] == [7]
    later = (datetime.now(UTC) + timedelta(days=25)).strftime("%Y-%m-%dT%H:%M:%SZ")
    rotated = await client.patch(
        f"{CREDENTIALS}/{credential_id}",
        json={"client_secret": sv.WORKING_SECRET_2, "secret_expires_at": later},
        headers=headers(api_key),
    )
    assert rotated.status_code == 200, rotated.text
    # The new secret's reminders start again, in the rotation's own transaction (besides whatever else the
    # rotation reports, such as credential.updated).
    after_rotation = await tape.new()
    assert [data["days_left"] for kind, data in after_rotation if kind == "credential.expiring"] == [30]
    await check_credential(state, credential_id)
    assert await tape.new() == []


async def test_verify_routes_answer_fresh_objects_and_isolate_accounts(
    connected: tuple[int, dict[str, int]],
    client: httpx.AsyncClient,
    api_key: str,
    other_api_key: str,
    state: AppState,
    microsoft: FakeMicrosoft,
    tape: Tape,
) -> None:
    credential_id, ids = connected
    _disable(microsoft)
    answer = await client.post(f"{MAILBOXES}/{ids[JIM]}/verify", headers=headers(api_key))
    assert answer.status_code == 200, answer.text
    assert answer.json()["health"]["state"] == "FAILING"
    assert answer.json()["health"]["error"] == "MAILBOX_DISABLED"
    assert answer.json() == (await client.get(f"{MAILBOXES}/{ids[JIM]}", headers=headers(api_key))).json()
    assert await tape.types() == [("mailbox.failing", ids[JIM])]
    before = (await credential_row(state, credential_id)).checked_at
    checked = await client.post(f"{CREDENTIALS}/{credential_id}/verify", headers=headers(api_key))
    assert checked.status_code == 200, checked.text
    assert checked.json()["status"] == "VALID"
    after = (await credential_row(state, credential_id)).checked_at
    assert before is not None
    assert after is not None
    assert after > before
    assert checked.json()["checked_at"] == after.strftime("%Y-%m-%dT%H:%M:%SZ")
    _disable_app(microsoft)
    refused = await client.post(f"{CREDENTIALS}/{credential_id}/verify", headers=headers(api_key))
    assert (refused.status_code, refused.json()["status"]) == (200, "INVALID")
    other = headers(other_api_key)
    for path in (f"{MAILBOXES}/{ids[JIM]}/verify", f"{CREDENTIALS}/{credential_id}/verify"):
        assert (await client.post(path, headers=other)).status_code == 404
        assert (await client.post(path)).status_code == 401


async def test_verify_answers_503_when_microsoft_does_not_answer(
    connected: tuple[int, dict[str, int]],
    settings: Settings,
    quick_state: AppState,
    api_key: str,
    microsoft: FakeMicrosoft,
    tape: Tape,
) -> None:
    _credential_id, ids = connected
    app = create_app(settings, state=quick_state)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://m365connect.test") as quick:
        microsoft.faults.graph_retry_after = 0.05
        microsoft.faults.graph_unavailable_rate = 1.0
        answer = await quick.post(f"{MAILBOXES}/{ids[JIM]}/verify", headers=headers(api_key))
        assert answer.status_code == 503
        assert answer.json()["title"] == "Service Unavailable"
        assert "Retry-After" in answer.headers
    assert await tape.new() == []


@pytest.fixture
async def second_state(settings: Settings) -> AsyncIterator[AppState]:
    """Another service's objects on the same database (its own pool and token cache): a second replica."""
    async with open_state(settings) as built:
        yield built


async def test_overlapping_checks_of_two_replicas_report_each_change_once(
    connected: tuple[int, dict[str, int]],
    state: AppState,
    second_state: AppState,
    microsoft: FakeMicrosoft,
    tape: Tape,
) -> None:
    credential_id, ids = connected
    both = sorted(ids.values())
    original = microsoft.scenario
    microsoft.faults.latency_ms = 30  # every answer takes a while: the checks overlap
    for _round in range(3):
        _disable(microsoft)
        await asyncio.gather(*(check_mailboxes(s, credential_id, both) for s in (state, second_state) * 2))
        assert await tape.types() == [("mailbox.failing", ids[JIM])]
        microsoft.change_directory(original)
        await asyncio.gather(*(check_mailboxes(s, credential_id, both) for s in (state, second_state) * 2))
        assert await tape.types() == [("mailbox.recovered", ids[JIM])]
    for _round in range(2):
        _delete_secret(microsoft)
        await asyncio.gather(*(check_credential(s, credential_id) for s in (state, second_state) * 2))
        assert await tape.types() == [
            ("credential.failing", credential_id),
            *(("mailbox.failing", mailbox_id) for mailbox_id in both),
        ]
        microsoft.change_directory(original)
        await asyncio.gather(*(check_credential(s, credential_id) for s in (state, second_state) * 2))
        assert await tape.types() == [("credential.recovered", credential_id)]
        await asyncio.gather(*(check_mailboxes(s, credential_id, both) for s in (state, second_state)))
        assert await tape.types() == [("mailbox.recovered", mailbox_id) for mailbox_id in both]


async def test_the_job_kinds_run_the_checks_of_their_payloads(
    connected: tuple[int, dict[str, int]], state: AppState, microsoft: FakeMicrosoft, tape: Tape
) -> None:
    credential_id, ids = connected
    kinds = {kind.name: kind for kind in job_kinds(state)}
    assert set(kinds) == {CREDENTIAL_JOB, MAILBOXES_JOB}
    assert all(kind.retry_delays for kind in kinds.values())
    _disable(microsoft)
    payload = {"credential_id": credential_id, "mailbox_ids": sorted(ids.values())}
    await kinds[MAILBOXES_JOB].handler(JobRun(job_id=1, kind=MAILBOXES_JOB, attempt=1), payload)
    assert await tape.types() == [("mailbox.failing", ids[JIM])]
    _disable_app(microsoft)
    run = JobRun(job_id=2, kind=CREDENTIAL_JOB, attempt=1)
    await kinds[CREDENTIAL_JOB].handler(run, {"credential_id": credential_id})
    assert await tape.types() == [("credential.failing", credential_id), ("mailbox.failing", ids[PAM])]


async def test_a_verdict_on_a_secret_rotated_meanwhile_is_dropped(
    connected: tuple[int, dict[str, int]],
    client: httpx.AsyncClient,
    api_key: str,
    state: AppState,
    microsoft: FakeMicrosoft,
    tape: Tape,
) -> None:
    credential_id, _ids = connected
    checked = await credential_row(state, credential_id)
    _delete_secret(microsoft)  # the old secret is refused...
    now = datetime.now(UTC)
    verdict = await ask_microsoft(state, checked, now=now)
    assert verdict.status == "INVALID"
    microsoft.change_app(  # ...and the account rotates to a new one while the verdict is on its way
        "contoso.com", sv.WORKING_APP, secrets=[{"value": sv.WORKING_SECRET_2, "expires_at": sv.FUTURE}]
    )
    rotated = await client.patch(
        f"{CREDENTIALS}/{credential_id}",
        json={"client_secret": sv.WORKING_SECRET_2, "secret_expires_at": sv.FUTURE},
        headers=headers(api_key),
    )
    assert rotated.status_code == 200, rotated.text
    await tape.new()
    async with state.transactions.begin() as session:
        await store_verdict(session, checked, verdict, now=now)
    assert await tape.new() == []
    assert (await credential_row(state, credential_id)).verification_status == "VALID"


async def test_a_refusal_seen_by_a_bulk_request_is_announced_in_its_transaction_and_a_rotation_recovers(
    connected: tuple[int, dict[str, int]],
    client: httpx.AsyncClient,
    api_key: str,
    state: AppState,
    microsoft: FakeMicrosoft,
    tape: Tape,
) -> None:
    credential_id, ids = connected
    _delete_secret(microsoft)
    state.tokens.clear()  # no cached token: the bulk request asks Microsoft
    refused = await bulk(client, api_key=api_key, emails=["oscar@contoso.com"], credential_id=credential_id)
    assert refused.status_code == 422
    assert await tape.types() == [
        ("credential.failing", credential_id),
        *(("mailbox.failing", mailbox_id) for mailbox_id in sorted(ids.values())),
    ]
    await check_credential(state, credential_id)  # the check finds the same state: nothing more
    assert await tape.new() == []
    microsoft.change_app(
        "contoso.com", sv.WORKING_APP, secrets=[{"value": sv.WORKING_SECRET_2, "expires_at": sv.FUTURE}]
    )
    rotated = await client.patch(
        f"{CREDENTIALS}/{credential_id}",
        json={"client_secret": sv.WORKING_SECRET_2, "secret_expires_at": sv.FUTURE},
        headers=headers(api_key),
    )
    assert rotated.status_code == 200, rotated.text
    recovered = [(kind, data) for kind, data in await tape.new() if kind.startswith("credential.")]
    assert [kind for kind, _data in recovered if kind != "credential.updated"] == ["credential.recovered"]
    assert next(data for kind, data in recovered if kind == "credential.recovered")["status"] == "VALID"
