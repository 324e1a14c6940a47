"""Schemathesis against the service's own /openapi.json, every operation, on a real `m365connect serve`.

For each operation, EXAMPLES generated requests of valid data and EXAMPLES of invalid data (wrong types,
missing fields, out-of-range ids, ...) with a valid API key; each response must be no 500, a status the
document lists, the content type it lists, and a body that matches the listed schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from m365connect.crypto import generate_key
from m365connect.simulator import FakeMicrosoft
from tests.factories import CREDENTIALS, credential_body
from tests.helpers import headers
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
