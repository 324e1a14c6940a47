"""The OpenAPI document never changes silently: it is compared with tests/snapshots/openapi.json.

After an intended change, regenerate the snapshot and review its diff:

    M365CONNECT_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/test_openapi_snapshot.py
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from m365connect.api.responses import JSON_NULL
from m365connect.app import create_app
from m365connect.errors import NotFound, Unauthorized
from m365connect.mailboxes.schemas import BULK_EXAMPLE, BULK_MULTI_STATUS_EXAMPLE
from m365connect.settings import Settings

SNAPSHOT = Path(__file__).parent / "snapshots" / "openapi.json"
UPDATE_VARIABLE = "M365CONNECT_UPDATE_SNAPSHOTS"
BULK = "/rest/v2/mailboxes/microsoft/bulk"
CREDENTIALS = "/rest/v2/mailboxes/microsoft/credentials"


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The document of an app built with default settings (no database is opened to build it)."""
    database = tmp_path_factory.mktemp("openapi") / "unused.db"
    schema: dict[str, Any] = create_app(Settings(database_url=f"sqlite+aiosqlite:///{database}")).openapi()
    return schema


def rendered(schema: dict[str, Any]) -> str:
    """Stable text: sorted keys, two-space indent, a final newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_document_matches_the_snapshot(document: dict[str, Any]) -> None:
    current = rendered(document)
    if os.environ.get(UPDATE_VARIABLE) == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(current, encoding="utf-8")
    assert SNAPSHOT.exists(), f"no snapshot yet: run with {UPDATE_VARIABLE}=1 to create it"
    expected = SNAPSHOT.read_text(encoding="utf-8")
    if current != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                current.splitlines(keepends=True),
                fromfile="tests/snapshots/openapi.json",
                tofile="generated /openapi.json",
                n=2,
            )
        )
        pytest.fail(
            f"The OpenAPI document changed. If intended, regenerate the snapshot with "
            f"{UPDATE_VARIABLE}=1 .venv/bin/pytest tests/test_openapi_snapshot.py and review it.\n{diff}",
            pytrace=False,
        )


def _response(document: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    answer: dict[str, Any] = document["paths"][path][method]["responses"][str(status)]
    return answer


def test_every_documented_status_of_the_contract_is_in_the_document(document: dict[str, Any]) -> None:
    expected = {
        (CREDENTIALS, "get"): {200, 401, 500},
        (CREDENTIALS, "post"): {201, 400, 401, 413, 422, 500, 503},
        (CREDENTIALS + "/{credential_id}", "patch"): {200, 400, 401, 404, 422, 503},
        (CREDENTIALS + "/{credential_id}", "delete"): {204, 401, 404, 422},
        (BULK, "post"): {201, 207, 400, 401, 413, 422, 500, 503},
        ("/rest/v2/mailboxes/microsoft", "get"): {200, 400, 401},
        ("/rest/v2/mailboxes/microsoft/{mailbox_id}", "get"): {200, 401, 404},
        ("/rest/v2/mailboxes/microsoft/{mailbox_id}", "delete"): {204, 401, 404},
        ("/readyz", "get"): {200, 503},
    }
    for (path, method), statuses in expected.items():
        documented = {int(code) for code in document["paths"][path][method]["responses"]}
        assert statuses <= documented, (path, method, statuses - documented)


def test_examples_carry_the_contracts_bodies_and_details(document: dict[str, Any]) -> None:
    bulk = document["paths"][BULK]["post"]
    examples = bulk["requestBody"]["content"]["application/json"]["examples"]
    assert examples["documented"]["value"] == BULK_EXAMPLE
    partial = _response(document, BULK, "post", 207)["content"]["application/json"]["example"]
    assert partial == BULK_MULTI_STATUS_EXAMPLE  # nulls included: FastAPI would drop them
    codes = _response(document, BULK, "post", 422)["content"]["application/json"]["examples"]
    assert codes["CREDENTIAL_ID_REQUIRED"]["value"] == {"message": "CREDENTIAL_ID_REQUIRED"}
    unauthorized = _response(document, CREDENTIALS, "get", 401)["content"]["application/json"]["examples"]
    assert unauthorized["default"]["value"]["detail"] == Unauthorized.default_detail == "Invalid api key"
    not_found = _response(document, CREDENTIALS + "/{credential_id}", "delete", 404)
    assert not_found["content"]["application/json"]["examples"]["default"]["value"]["detail"] == (
        NotFound.default_detail
    )
    assert "Retry-After" in _response(document, BULK, "post", 503)["headers"]
    assert "X-Request-Id" in _response(document, BULK, "post", 201)["headers"]
    assert JSON_NULL not in json.dumps(document)
