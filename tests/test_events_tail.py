"""`m365connect events tail` against a real served service: it prints each event once, in order, keeps
following across a service restart (saying so on stderr) and stops cleanly on Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from m365connect.client.events import describe, follow
from m365connect.client.http import ServiceClient
from m365connect.crypto import generate_key
from m365connect.simulator import FakeMicrosoft
from tests.factories import CREDENTIALS, EVENTS, credential_body
from tests.helpers import headers
from tests.processes import Children, free_port, stop, wait_until_healthy
from tests.served import new_api_key, service_env

WAIT = 20.0


def until(condition: Callable[[], bool], *, what: str, log: Path) -> None:
    """Poll until `condition` holds (bounded); fail with the tail's output."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"{what}\n{log.read_text()}"
        time.sleep(0.05)


def printed(log: Path) -> list[dict[str, Any]]:
    """The JSON lines the tail printed (its stderr shares the log: those lines are not JSON)."""
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


async def test_tail_follows_the_stream_across_a_restart_and_stops_on_ctrl_c(
    database_url: str, microsoft: FakeMicrosoft, tmp_path: Path
) -> None:
    env = service_env(database_url=database_url, keys=generate_key(), microsoft=microsoft)
    api_key = await new_api_key(database_url, account="acme")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    children = Children()

    def start_service(name: str) -> subprocess.Popen[bytes]:
        log = tmp_path / f"{name}.log"
        child = children.start(["serve", "--port", str(port)], cwd=tmp_path, env=env, log=log)
        wait_until_healthy(child, url, log=log)
        return child

    try:
        service = start_service("first")
        async with httpx.AsyncClient(base_url=url, headers=headers(api_key)) as http:
            created = await http.post(CREDENTIALS, json=credential_body())
            assert created.status_code == 201, created.text
        tail_log = tmp_path / "tail.log"
        tail = children.start(
            ["events", "tail", "--json", "--interval", "0.1", "--url", url],
            cwd=tmp_path,
            env={**env, "M365CONNECT_API_KEY": api_key},
            log=tail_log,
        )
        until(lambda: len(printed(tail_log)) == 1, what="the first event was not printed", log=tail_log)

        stop([service])
        until(lambda: "retrying in" in tail_log.read_text(), what="no retry message", log=tail_log)
        assert tail.poll() is None  # still following
        start_service("second")
        async with httpx.AsyncClient(base_url=url, headers=headers(api_key)) as http:
            credential_id = created.json()["credential_id"]
            renamed = await http.patch(f"{CREDENTIALS}/{credential_id}", json={"name": "after the restart"})
            assert renamed.status_code == 200, renamed.text
            stream = (await http.get(EVENTS)).json()["events"]
        until(lambda: len(printed(tail_log)) == 2, what="the event after the restart", log=tail_log)
        assert "answers again" in tail_log.read_text()

        tail.send_signal(signal.SIGINT)
        assert tail.wait(timeout=WAIT) == 0
        assert printed(tail_log) == stream  # every event once, in order, as the API has it
        assert [event["type"] for event in stream] == ["credential.created", "credential.updated"]
        output = tail_log.read_text()
        assert f"stopped after event {stream[-1]['id']} (resume with --after {stream[-1]['id']})" in output
        assert "Traceback" not in output
        assert api_key not in output
    finally:
        children.stop_all()


def test_follow_backs_off_while_the_service_is_unavailable_and_keeps_its_cursor() -> None:
    """503 twice, then the page after the cursor: the waits double and the cursor is not lost."""
    answers = [
        httpx.Response(503, json={"title": "Service Unavailable", "status": 503}),
        httpx.Response(503, json={"title": "Service Unavailable", "status": 503}),
    ]
    asked: list[str] = []
    event = {"id": 8, "type": "mailbox.connected", "occurred_at": "2026-12-02T10:00:00Z", "data": {}}

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.query.decode())
        if answers:
            return answers.pop(0)
        return httpx.Response(200, json={"events": [event], "next_after": 8})

    waits: list[float] = []
    shown: list[dict[str, Any]] = []
    warnings: list[str] = []
    client = ServiceClient(api_key="k", transport=httpx.MockTransport(handler), max_attempts=1)
    with client:
        cursor = follow(
            client, after=7, limit=100, interval=0.5, emit=shown.append, warn=warnings.append,
            sleep=waits.append, rounds=3,
        )  # fmt: skip
    assert cursor == 8
    assert shown == [event]
    assert asked == ["after=7&limit=100"] * 3
    assert waits == [1.0, 2.0, 0.5]  # back-off, doubled, then the polling interval
    assert "retrying in 1 s (after event 7)" in warnings[0]
    assert warnings[-1] == "the service answers again; following after event 7"


def test_a_readable_line_per_event() -> None:
    mailbox = {"id": 3, "email": "jim@contoso.com", "status": "ACTIVE"}
    line = describe(
        {"id": 12, "type": "mailbox.connected", "occurred_at": "2026-12-02T10:00:00Z", "data": mailbox}
    )
    assert line == "12  2026-12-02T10:00:00Z  mailbox.connected       mailbox 3 jim@contoso.com ACTIVE"
    credential = {"credential_id": 1, "name": "MS Graph app", "status": "VALID"}
    line = describe(
        {"id": 1, "type": "credential.created", "occurred_at": "2026-12-02T10:00:00Z", "data": credential}
    )
    assert line.endswith("credential.created      credential 1 'MS Graph app' VALID")
