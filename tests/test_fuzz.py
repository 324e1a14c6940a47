"""Schemathesis against the service's own /openapi.json, every operation, on a real `m365connect serve`.

For each operation, EXAMPLES generated requests of valid data and EXAMPLES of invalid data (wrong types,
missing fields, out-of-range ids, ...) with a valid API key; each response must be no 500, a status the
document lists, the content type it lists, and a body that matches the listed schema.

Then, on both databases, hostile shapes that a generator driven by the schema does not produce by itself
(it keeps to what the document allows, and hypothesis leaves lone surrogates out of text): lone surrogates,
NULs and other control characters, strings longer than any column, integers past int64 and below 1, and
date-times whose UTC conversion overflows. Each goes into one field of a request that would otherwise
succeed (a template body per operation, and the integer path and query parameters of the document), field
by field, so that nothing but the hostile value stops it; the answer must pass the same checks and must not
have saved the value. Every field's failure is reported, not only the first.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from m365connect.crypto import generate_key
from m365connect.simulator import FakeMicrosoft
from tests import scenario_values as sv
from tests.conftest import BACKENDS
from tests.factories import BULK, CREDENTIALS, FABRIKAM, MAILBOXES, WEBHOOKS, credential_body
from tests.helpers import headers
from tests.hostile import HOSTILE_EXAMPLES, Target, hostile_shapes, saved_anywhere, targets
from tests.processes import Children
from tests.served import new_api_key, serve, service_env

EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture
def backend() -> str:
    """One real process on SQLite: the contract does not depend on the database."""
    return "sqlite"


@pytest.fixture
async def served(database_url: str, microsoft: FakeMicrosoft, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A service with an API key and one working credential (bulk requests reach the simulator)."""
    key = await new_api_key(database_url, account="fuzz")
    # service_env raises the rate limit: the fuzzer sends hundreds of requests with one key.
    env = service_env(database_url=database_url, keys=generate_key(), microsoft=microsoft)
    children = Children()
    try:
        url, _ = serve(children, env=env, workdir=tmp_path, name="fuzzed")
        yield url, key
    finally:
        children.stop_all()


def _modes(operation: schemathesis.APIOperation) -> list[GenerationMode]:
    # Invalid data needs something to make invalid: parameters or a body.
    raw = operation.definition.raw
    has_input = bool(raw.get("parameters") or raw.get("requestBody"))
    return [GenerationMode.POSITIVE, GenerationMode.NEGATIVE] if has_input else [GenerationMode.POSITIVE]


def _with_credential(case: schemathesis.Case, credential_id: int) -> schemathesis.Case:
    # Valid bulk bodies name the real credential, so they reach Microsoft (the simulator) and answer
    # 201/207 with per-mailbox results instead of 422 INVALID_CREDENTIAL_ID every time.
    if isinstance(case.body, dict):
        case.body["credential_id"] = credential_id
    return case


def test_every_operation_answers_as_documented(served: tuple[str, str]) -> None:
    url, key = served
    created = httpx.post(f"{url}{CREDENTIALS}", json=credential_body(), headers=headers(key), timeout=30)
    assert created.status_code == 201, created.text
    credential_id = created.json()["credential_id"]
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    # Deletes last, so that the credential is still there while the other operations are fuzzed.
    operations = sorted(
        (result.ok() for result in schema.get_all_operations()), key=lambda o: o.method == "delete"
    )
    assert len(operations) >= 8
    for operation in operations:
        for mode in _modes(operation):
            strategy = operation.as_strategy(generation_mode=mode, headers=headers(key))
            if operation.path.endswith("/bulk") and mode is GenerationMode.POSITIVE:
                strategy = strategy.map(lambda case: _with_credential(case, credential_id))

            @hypothesis.settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(hypothesis.HealthCheck),
            )
            @hypothesis.given(case=strategy)
            def run(case: schemathesis.Case) -> None:
                case.call_and_validate(base_url=url, checks=CHECKS, timeout=30)

            run()


def _templates(credential_id: int) -> dict[str, Any]:
    """A body per operation that succeeds as it is (so only the hostile value can stop it)."""
    hook = {"url": "https://93.184.215.14/hook", "event_types": ["mailbox.failing"], "description": "Ops"}
    return {
        f"POST {WEBHOOKS}": hook,  # a public IP literal: no DNS, no private address
        f"PATCH {WEBHOOKS}/{{webhook_id}}": {**hook, "enabled": True},
        f"POST {CREDENTIALS}": credential_body(**FABRIKAM),  # not the served credential's app: no duplicate
        f"PATCH {CREDENTIALS}/{{credential_id}}": {
            "name": "Renamed",
            "client_secret": sv.WORKING_SECRET,
            "secret_expires_at": sv.FUTURE,
        },
        f"POST {BULK}": {
            "auth_type": "APP_ONLY",
            "credential_id": credential_id,
            "accounts": [{"mailbox_email": "jim@contoso.com", "display_name": "Jim Halpert"}],
        },
    }


def _undo(url: str, key: str, status: int, content: bytes) -> None:
    # A request that succeeded is undone, so that the next example inserts again (a re-add or a duplicate
    # credential would answer without writing, and the hostile value would not reach the database).
    if status not in (201, 207):
        return
    body = json.loads(content)
    for item in body if isinstance(body, list) else []:
        if item.get("success") and item.get("id"):
            httpx.delete(f"{url}{MAILBOXES}/{item['id']}", headers=headers(key), timeout=30)
    if isinstance(body, dict) and "credential_id" in body:
        httpx.delete(f"{url}{CREDENTIALS}/{body['credential_id']}", headers=headers(key), timeout=30)
    if isinstance(body, dict) and "secret" in body and "id" in body:  # a new webhook (limit: 20 per account)
        httpx.delete(f"{url}{WEBHOOKS}/{body['id']}", headers=headers(key), timeout=30)


def _hostile_run(
    operation: schemathesis.APIOperation,
    target: Target,
    shape: hypothesis.strategies.SearchStrategy[Any],
    *,
    base: dict[str, Any],
    url: str,
    key: str,
) -> str | None:
    """None, or what went wrong for the smallest hostile value hypothesis found (tried last)."""
    tried: list[Any] = []

    @hypothesis.settings(
        max_examples=HOSTILE_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(value=shape)
    def run(value: Any) -> None:
        tried.append(value)
        request = target.inject(base, value)
        if request["body"] is None:
            del request["body"]
        case = operation.Case(**request, headers=headers(key), media_type="application/json")
        response = case.call_and_validate(base_url=url, checks=CHECKS, timeout=30)
        _undo(url, key, response.status_code, response.content)
        if target.location == "body" and 200 <= response.status_code < 300:
            assert not saved_anywhere(response.content, value), f"{response.status_code}: the value was saved"

    try:
        run()
    except (Exception, FailureGroup) as exc:  # a FailureGroup is a BaseExceptionGroup
        failures = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
        found = "; ".join(str(failure).strip().splitlines()[0] for failure in failures)
        value = ascii(tried[-1])[:40] if tried else "?"
        return f"{operation.label} {target} = {value}: {found}"
    return None


@pytest.mark.parametrize("backend", BACKENDS)
def test_hostile_values_are_refused_field_by_field(served: tuple[str, str]) -> None:
    url, key = served
    created = httpx.post(f"{url}{CREDENTIALS}", json=credential_body(), headers=headers(key), timeout=30)
    assert created.status_code == 201, created.text
    credential_id = created.json()["credential_id"]
    hook = httpx.post(
        f"{url}{WEBHOOKS}", json={"url": "https://93.184.215.14/"}, headers=headers(key), timeout=30
    )
    assert hook.status_code == 201, hook.text
    webhook_id = hook.json()["id"]
    templates = _templates(credential_id)
    for label, template in templates.items():  # each template succeeds as it is: only the value can stop it
        method, route = label.split(" ", 1)
        address = url + route.replace("{credential_id}", str(credential_id)).replace(
            "{webhook_id}", str(webhook_id)
        )
        answer = httpx.request(method, address, json=template, headers=headers(key), timeout=30)
        assert answer.status_code in (200, 201), (label, answer.text)
        _undo(url, key, answer.status_code, answer.content)
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    failures: list[str] = []
    for operation in (result.ok() for result in schema.get_all_operations()):
        has_body = "requestBody" in operation.definition.raw
        assert not has_body or operation.label in templates, f"add a template for {operation.label}"
        body = templates.get(operation.label)
        names = {param["name"] for param in operation.definition.raw.get("parameters", [])}
        ids = {"credential_id": credential_id, "mailbox_id": 1, "webhook_id": webhook_id, "job_id": 1}
        path = {name: value for name, value in ids.items() if name in names}
        base: dict[str, Any] = {"path_parameters": path, "query": {}, "body": body}
        for target in targets(operation.definition.raw, body):  # every failure, not only the first
            for shape in hostile_shapes(target).values():
                failure = _hostile_run(operation, target, shape, base=base, url=url, key=key)
                failures += [failure] if failure else []
    assert not failures, "\n".join(failures)
