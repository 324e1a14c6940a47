"""Logs and metrics: the per-request log line, JSON formatting, Prometheus metrics fed by the real flow
(simulator, DNS, database), no secret in either, and `m365connect serve` logging JSON lines only."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from m365connect.accounts.models import Account
from m365connect.app import create_app
from m365connect.crypto import generate_key
from m365connect.deliverability import DeliverabilityChecker, build_resolver
from m365connect.deliverability.observer import LookupOutcome
from m365connect.microsoft.token import ClientCredential
from m365connect.observability import JsonFormatter, TextFormatter, configure_logging
from m365connect.settings import Settings
from m365connect.simulator import FakeMicrosoft
from m365connect.state import AppState, open_state
from tests import scenario_values as sv
from tests.factories import BULK, CREDENTIALS, bulk, create_credential
from tests.helpers import headers
from tests.processes import Children, clean_env, free_port, wait_until_healthy

CREDENTIAL_ROUTE = "/rest/v2/mailboxes/microsoft/credentials/{credential_id}"


def sample(exposition: str, name: str, **labels: str) -> float:
    """The value of one sample of a /metrics answer (0 when the series does not exist)."""
    for family in text_string_to_metric_families(exposition):
        for item in family.samples:
            if item.name == name and item.labels == labels:
                return float(item.value)
    return 0.0


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.getMessage() == "http.request"]


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Everything logged at DEBUG or above while the test runs, formatted as the service does."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


async def test_one_log_line_per_request_with_route_template_and_account(
    client: httpx.AsyncClient, api_key: str, state: AppState, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="m365connect.access")
    created = await create_credential(client, api_key=api_key)
    caplog.clear()
    response = await client.patch(
        f"{CREDENTIALS}/{created['credential_id']}", json={"name": "renamed"}, headers=headers(api_key)
    )
    assert response.status_code == 200
    async with state.sessions() as session:
        account_id = (await session.scalars(select(Account.id).where(Account.name == "acme"))).one()
    [record] = access_records(caplog)
    assert record.__dict__["request_id"] == response.headers["x-request-id"]
    assert record.__dict__["account_id"] == account_id
    assert record.__dict__["route"] == CREDENTIAL_ROUTE
    assert record.__dict__["method"] == "PATCH"
    assert record.__dict__["status"] == 200
    assert 0 < record.__dict__["duration_ms"] < 60_000


async def test_unmatched_unauthenticated_and_framework_requests_are_logged(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="m365connect.access")
    await client.get("/rest/v2/nothing/here/42")
    await client.get(CREDENTIALS)
    await client.get("/openapi.json")
    missing, unauthorized, document = access_records(caplog)
    assert (document.__dict__["route"], document.__dict__["status"]) == ("/openapi.json", 200)
    assert (missing.__dict__["route"], missing.__dict__["status"]) == (None, 404)
    assert (unauthorized.__dict__["route"], unauthorized.__dict__["status"]) == (CREDENTIALS, 401)
    assert unauthorized.__dict__["account_id"] is None


def test_json_formatter_writes_one_object_per_line_and_redacts_credential_fields() -> None:
    logger = logging.getLogger("m365connect.test")
    record = logger.makeRecord(
        logger.name,
        logging.WARNING,
        __file__,
        1,
        "graph.retry",
        (),
        None,
        extra={"attempt": 2, "wait": 1.5, "client_secret": "s3cret", "Authorization": "Bearer x"},
    )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["event"] == "graph.retry"
    assert (entry["level"], entry["logger"], entry["attempt"], entry["wait"]) == (
        "WARNING",
        "m365connect.test",
        2,
        1.5,
    )
    assert entry["client_secret"] == entry["Authorization"] == "[redacted]"
    assert entry["time"].endswith("Z")
    text = TextFormatter().format(record)
    assert "graph.retry attempt=2 wait=1.5" in text
    assert "s3cret" not in text


def test_json_formatter_keeps_the_traceback_in_the_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.getLogger("t").makeRecord(
            "t", logging.ERROR, __file__, 1, "request.failed", (), exc_info=__import__("sys").exc_info()
        )
    entry = json.loads(JsonFormatter().format(record))
    assert "RuntimeError: boom" in entry["exception"]


async def test_metrics_count_requests_graph_answers_waits_tokens_dns_and_bulks(
    client: httpx.AsyncClient, api_key: str, microsoft: FakeMicrosoft
) -> None:
    created = await create_credential(client, api_key=api_key)
    connected = await bulk(client, api_key=api_key, emails=["jim@contoso.com", "not-an-address"])
    assert connected.status_code == 207
    microsoft.faults.graph_throttle_rate = 1.0  # every Graph answer is a 429, past the retry budget
    microsoft.faults.graph_retry_after = 0.01
    throttled = await bulk(client, api_key=api_key, emails=["kevin@contoso.com"])
    assert throttled.json()[0]["error"] == "MICROSOFT_THROTTLED"
    rejected = await client.post(
        CREDENTIALS,
        json={"tenant_id": sv.CONTOSO_TENANT, "client_id": sv.READER_APP, "client_secret": "wrong",
              "secret_expires_at": sv.FUTURE},
        headers=headers(api_key),
    )  # fmt: skip
    assert rejected.status_code == 422
    await client.delete(f"{CREDENTIALS}/{created['credential_id'] + 1000}", headers=headers(api_key))

    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    http = "m365connect_http_requests_total"
    assert sample(text, http, route=BULK, method="POST", status="207") == 2
    assert sample(text, http, route=CREDENTIALS, method="POST", status="201") == 1
    assert sample(text, http, route=CREDENTIALS, method="POST", status="422") == 1
    assert sample(text, http, route=CREDENTIAL_ROUTE, method="DELETE", status="404") == 1
    graph = "m365connect_graph_requests_total"
    assert sample(text, graph, outcome="answered", status_class="2xx") >= 2  # lookup + mailbox probe
    assert sample(text, graph, outcome="throttled", status_class="4xx") == 5  # five attempts
    assert sample(text, "m365connect_graph_retry_waits_total", reason="throttled") == 4
    waited = sample(text, "m365connect_graph_retry_wait_seconds_total", reason="throttled")
    assert waited == pytest.approx(0.04)
    assert sample(text, "m365connect_token_requests_total", outcome="granted") == 1  # then cached
    assert sample(text, "m365connect_token_requests_total", outcome="rejected") == 1
    assert sample(text, "m365connect_dns_lookups_total", type="TXT", outcome="answer") >= 1
    assert sample(text, "m365connect_bulk_accounts_count") == 2
    assert sample(text, "m365connect_bulk_accounts_sum") == 3
    assert sample(text, "m365connect_bulk_duration_seconds_count", status="207") == 2
    for result, count in (("connected", 1), ("INVALID_EMAIL", 1), ("MICROSOFT_THROTTLED", 1)):
        assert sample(text, "m365connect_bulk_mailboxes_total", result=result) == count


async def test_a_refused_bulk_counts_with_its_status(client: httpx.AsyncClient, api_key: str) -> None:
    response = await client.post(BULK, json={"accounts": []}, headers=headers(api_key))
    assert response.status_code == 422
    text = (await client.get("/metrics")).text
    assert sample(text, "m365connect_bulk_duration_seconds_count", status="422") == 1
    assert sample(text, "m365connect_bulk_accounts_count") == 1


async def test_each_service_has_its_own_registry_and_the_global_one_stays_empty(
    settings: Settings, state: AppState
) -> None:
    async with open_state(settings) as other:
        first, second = create_app(settings, state=state), create_app(settings, state=other)
        for app, calls in ((first, 3), (second, 1)):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                for _ in range(calls):
                    await http.get("/healthz")
                text = (await http.get("/metrics")).text
            healthz = {"route": "/healthz", "method": "GET", "status": "200"}
            assert sample(text, "m365connect_http_requests_total", **healthz) == calls
    assert prometheus_client.REGISTRY.get_sample_value("m365connect_http_requests_total") is None


async def test_the_clients_report_to_the_metrics_they_were_built_with(state: AppState) -> None:
    """Observers are passed at construction: the shared clients and the checker feed the state's registry."""
    await state.checker.check_domains(["contoso.com"])
    text = state.metrics.render().decode()
    assert sample(text, "m365connect_dns_lookups_total", type="TXT", outcome="answer") >= 1


async def test_metrics_can_be_switched_off(settings: Settings, state: AppState) -> None:
    app = create_app(settings.model_copy(update={"metrics_enabled": False}), state=state)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        assert (await http.get("/metrics")).status_code == 404
    assert "/metrics" not in app.openapi()["paths"]


class RecordingDnsObserver:
    """Keeps what the checker reports."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, LookupOutcome]] = []

    def looked_up(self, rdtype: str, outcome: LookupOutcome, seconds: float) -> None:
        assert seconds >= 0
        self.seen.append((rdtype, outcome))


async def test_the_checker_reports_lookups_and_failures(microsoft: FakeMicrosoft) -> None:
    observer = RecordingDnsObserver()
    working = build_resolver([f"127.0.0.1:{microsoft.dns_port}"], timeout=0.5, lifetime=1.0)
    await DeliverabilityChecker(working, observer=observer).check_domain("contoso.com")
    assert ("TXT", "answer") in observer.seen
    dead = build_resolver(["127.0.0.1:9"], timeout=0.1, lifetime=0.2)
    failing = RecordingDnsObserver()
    await DeliverabilityChecker(dead, observer=failing).check_domain("contoso.com")
    assert failing.seen
    assert {outcome for _, outcome in failing.seen} == {"error"}


async def test_no_secret_token_or_key_in_debug_logs_of_a_full_flow(
    client: httpx.AsyncClient,
    api_key: str,
    state: AppState,
    microsoft: FakeMicrosoft,
    json_lines: io.StringIO,
) -> None:
    created = await create_credential(client, api_key=api_key)
    url = f"{CREDENTIALS}/{created['credential_id']}"
    rotate = {"client_secret": "wrong-one", "secret_expires_at": sv.FUTURE}
    assert (await client.patch(url, json=rotate, headers=headers(api_key))).status_code == 422
    rotate["client_secret"] = sv.WORKING_SECRET_2
    assert (await client.patch(url, json=rotate, headers=headers(api_key))).status_code == 200
    microsoft.faults.graph_throttle_rate = 0.5
    microsoft.faults.graph_retry_after = 0.01
    microsoft.faults.token_unavailable_rate = 0.5
    await bulk(client, api_key=api_key, emails=["jim@contoso.com", "kevin@contoso.com", "x@y"])
    metrics = (await client.get("/metrics")).text
    credential = ClientCredential(sv.CONTOSO_TENANT, sv.WORKING_APP, sv.WORKING_SECRET_2)
    token = (await state.tokens.acquire(credential)).value
    output = json_lines.getvalue()
    lines = [json.loads(line) for line in output.splitlines()]
    events = {line["event"] for line in lines}
    assert {"http.request", "graph.retry"} <= events  # the flow was logged, retries included
    assert any(line["event"] == "graph.retry" and "attempt" in line for line in lines)
    secrets = (sv.WORKING_SECRET, sv.WORKING_SECRET_2, "wrong-one", api_key, api_key.split("_", 2)[2], token)
    for secret in secrets:
        assert secret not in output
        assert secret not in metrics
    assert "eyJ" not in output  # no JWT at all
    assert "authorization" not in output.lower().replace('"authorization": "[redacted]"', "")


def test_configure_logging_replaces_handlers_and_silences_uvicorns_access_log() -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    access = logging.getLogger("uvicorn.access")
    stream = io.StringIO()
    try:
        configure_logging(Settings(log_level="DEBUG", log_format="json"), stream=stream)
        assert len(root.handlers) == 1
        assert root.level == logging.DEBUG
        logging.getLogger("uvicorn.error").info("Started server process [%d]", 7)
        access.info('127.0.0.1:1 - "GET / HTTP/1.1" 200')
        [line] = stream.getvalue().splitlines()
        assert json.loads(line)["event"] == "Started server process [7]"
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        access.disabled = False


def test_serve_logs_json_lines_and_one_line_per_request(tmp_path: Path, microsoft: FakeMicrosoft) -> None:
    port, log = free_port(), tmp_path / "serve.log"
    env = clean_env(
        M365CONNECT_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}",
        M365CONNECT_ENCRYPTION_KEYS=generate_key(),
    )
    children = Children()
    try:
        command = ["serve", "--port", str(port), "--proxy-headers"]
        child = children.start(command, cwd=tmp_path, env=env, log=log)
        base = f"http://127.0.0.1:{port}"
        wait_until_healthy(child, base, log=log)
        with httpx.Client(base_url=base, timeout=5) as http:
            answered = http.get(CREDENTIALS, headers={"X-Request-Id": "trace-me"})
            assert answered.status_code == 401
            assert "m365connect_http_requests_total" in http.get("/metrics").text
    finally:
        children.stop_all()
    lines = [json.loads(line) for line in log.read_text().splitlines()]  # every line is JSON
    [request] = [line for line in lines if line.get("request_id") == "trace-me"]
    assert (request["event"], request["route"], request["status"]) == ("http.request", CREDENTIALS, 401)
    assert not any("HTTP/1.1" in line["event"] for line in lines)  # no uvicorn access line
    assert any(line["event"].startswith("Uvicorn running") for line in lines)


async def test_long_lived_objects_are_built_once(state: AppState) -> None:
    """The bulk services, their checker and resolver are the state's own, not rebuilt per request."""
    assert state.bulk_services is state.bulk_services
    assert state.bulk_services.checker is state.checker
    assert state.bulk_services.credentials is state.credential_services
    assert state.credential_services.clouds is state.clouds
    assert state.clouds.tokens("global") is state.tokens
    assert state.clouds.graph("global") is state.graph
