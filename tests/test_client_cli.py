"""The command-line client (`connect`, `credentials …`) against the real service on a real socket.

The service runs under uvicorn on the test's event loop (it shares the fixtures' state); each command runs
in a worker thread, so its blocking HTTP calls reach the server through the loop. `Front` is an ASGI layer
in front of the app, as a proxy would be: it records bulk request sizes and can answer 429/503 itself.
"""

from __future__ import annotations

import ast
import asyncio
import csv
import io
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import Result
from rich.console import Console
from typer.testing import CliRunner

from m365connect.app import create_app
from m365connect.cli import app
from m365connect.client.csv_io import RESULT_COLUMNS, read_input
from m365connect.client.http import ItemResult, retry_after_seconds
from m365connect.client.report import MAX_FIXES_PER_CODE, fixes
from m365connect.explanations import Context
from m365connect.settings import Settings
from m365connect.simulator import FakeMicrosoft
from m365connect.state import AppState, open_state
from tests import scenario_values as sv
from tests.factories import MAILBOXES, create_credential
from tests.helpers import headers
from tests.served import serving_in_process

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
SERVER_LIMIT = 3  # the service's max_accounts_per_request here, so that splitting is exercised


@pytest.fixture(name="backend")
def sqlite_backend() -> str:
    """The client only speaks HTTP: one database backend is enough (the service is tested on both)."""
    return "sqlite"


@dataclass
class Front:
    """In front of the app: records the size of every bulk request that reaches it, answers the queued
    (status, Retry-After) itself first, and runs `after_first_bulk` before the first bulk answer leaves.
    `path_suffix` chooses the requests it stands in front of (the others go straight to the app)."""

    app: Any
    bulk_sizes: list[int] = field(default_factory=list)
    queued: list[tuple[int, str]] = field(default_factory=list)
    after_first_bulk: Callable[[], None] | None = None
    path_suffix: str = "/bulk"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith(self.path_suffix):
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if self.queued:
            status, retry_after = self.queued.pop(0)
            await _answer(send, status, retry_after)
            return
        self.bulk_sizes.append(len(json.loads(body)["accounts"]))
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                hook, self.after_first_bulk = self.after_first_bulk, None
                if hook is not None:
                    hook()
            await send(message)

        await self.app(scope, replay, sending)


async def _answer(send: Send, status: int, retry_after: str) -> None:
    body = json.dumps({"title": "Busy", "status": status, "detail": "busy", "timestamp": "x"}).encode()
    response_headers = [(b"content-type", b"application/json"), (b"retry-after", retry_after.encode())]
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True)
class Service:
    url: str
    front: Front


@pytest.fixture(name="service")
async def service_fixture(settings: Settings, state: AppState) -> AsyncIterator[Service]:
    """The service on 127.0.0.1 (a free port), bulk limit SERVER_LIMIT, bulk deadline 1.5 s."""
    quick = settings.model_copy(
        update={"max_accounts_per_request": SERVER_LIMIT, "bulk_deadline_seconds": 1.5}
    )
    async with open_state(quick) as quick_state:
        front = Front(create_app(quick, state=quick_state))
        async with serving_in_process(front) as url:
            yield Service(url=url, front=front)


@pytest.fixture
async def credential_id(client: httpx.AsyncClient, api_key: str) -> int:
    """Contoso's working credential of account acme."""
    return int((await create_credential(client, api_key=api_key))["credential_id"])


async def run(
    service: Service, *args: str, api_key: str, exit_code: int = 0, input: str | None = None, **env: str
) -> Result:
    """Run the CLI in a worker thread against the service, asserting the exit code."""
    variables = {"M365CONNECT_URL": service.url, "M365CONNECT_API_KEY": api_key, **env}
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=variables, input=input)
    assert result.exit_code == exit_code, (result.output, result.exception)
    return result


def results_of(path: Path, *, delimiter: str = ",", encoding: str = "utf-8") -> list[dict[str, str]]:
    with path.open(encoding=encoding, newline="") as source:
        reader = csv.DictReader(source, delimiter=delimiter)
        assert tuple(reader.fieldnames or ()) == RESULT_COLUMNS
        return list(reader)


EXCEL = (
    "\ufeffRow;Mailbox Email;DISPLAY_NAME;Department\r\n"
    "1;jim@contoso.com;Jim H;Sales\r\n"
    "2;JIM@Contoso.com;Jim again;Sales\r\n"
    "3;jimothy@contoso.com;;Sales\r\n"
    ";;;\r\n"
    "4;pam@contoso.com;Pam;Reception\r\n"
    "5;nobody@contoso.com;;\r\n"
    "6;kevin@contoso.com;Kevin;Accounting\r\n"
    "7;not an address;;\r\n"
)


# ----------------------------------------------------------------------------------------- connect


async def test_excel_csv_is_connected_in_batches_with_one_result_per_row_in_order(
    service: Service, api_key: str, credential_id: int, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    source = tmp_path / "mailboxes.csv"
    source.write_bytes(EXCEL.encode("utf-8"))
    # --no-job: requests of --batch-size (without it the file would go as one bulk job:
    # tests/jobs/test_client_jobs.py).
    args = ["connect", str(source), "--credential-id", str(credential_id), "--batch-size", str(SERVER_LIMIT)]
    args.append("--no-job")
    result = await run(service, *args, api_key=api_key)

    # 7 rows, one a duplicate answered locally: 6 submitted in requests of at most the server's limit.
    assert service.front.bulk_sizes == [3, 3]
    assert "2 connected, 5 failed, 0 retried" in result.stdout
    raw = (tmp_path / "mailboxes.results.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # the input's BOM and delimiter: Excel opens it the same way
    rows = results_of(tmp_path / "mailboxes.results.csv", delimiter=";", encoding="utf-8-sig")
    assert [(r["mailbox_email"], r["success"], r["error"]) for r in rows] == [
        ("jim@contoso.com", "true", ""),
        ("JIM@Contoso.com", "false", "DUPLICATE_EMAIL"),
        ("jimothy@contoso.com", "false", "WRONG_ALIAS"),
        ("pam@contoso.com", "true", ""),
        ("nobody@contoso.com", "false", "MAILBOX_NOT_FOUND"),
        ("kevin@contoso.com", "false", "MAILBOX_ACCESS_DENIED"),
        ("not an address", "false", "INVALID_EMAIL"),
    ]
    jim, _, alias, pam, _, kevin, _ = rows
    assert (jim["display_name"], jim["spf_correct"], jim["dkim_correct"]) == ("Jim H", "true", "true")
    assert alias["primary_email"] == "jim@contoso.com"
    assert "jim@contoso.com" in alias["explanation"]
    assert (
        f"Test-ApplicationAccessPolicy -Identity kevin@contoso.com -AppId {sv.WORKING_APP}"
        in (kevin["explanation"])
    )

    listed = await client.get(MAILBOXES, headers=headers(api_key))
    connected = {m["email"]: (m["id"], m["name"]) for m in listed.json()["content"]}
    assert connected == {
        "jim@contoso.com": (int(jim["id"]), "Jim H"),
        "pam@contoso.com": (int(pam["id"]), "Pam"),
    }

    again = await run(service, *args, api_key=api_key)
    assert "2 connected, 5 failed" in again.stdout  # re-adding is idempotent
    assert (
        results_of(tmp_path / "mailboxes.results.csv", delimiter=";", encoding="utf-8-sig")[0]["id"]
        == jim["id"]
    )


async def test_a_plain_csv_without_header_and_an_explicit_output(
    service: Service, api_key: str, credential_id: int, tmp_path: Path
) -> None:
    source = tmp_path / "in.csv"
    source.write_text("jim@contoso.com,Jim\npam@contoso.com\n", encoding="utf-8")
    target = tmp_path / "out.csv"
    await run(service, "connect", str(source), "-o", str(target), api_key=api_key)  # the only credential
    rows = results_of(target)
    assert [(r["mailbox_email"], r["display_name"], r["success"]) for r in rows] == [
        ("jim@contoso.com", "Jim", "true"),
        ("pam@contoso.com", "", "true"),
    ]
    assert not target.read_bytes().startswith(b"\xef\xbb\xbf")


async def test_transient_item_failures_are_submitted_again_alone(
    service: Service, api_key: str, credential_id: int, microsoft: FakeMicrosoft, tmp_path: Path
) -> None:
    microsoft.faults.graph_retry_after = 0.1
    microsoft.faults.graph_throttle_rate = 1.0
    service.front.after_first_bulk = lambda: setattr(microsoft.faults, "graph_throttle_rate", 0.0)
    source = tmp_path / "in.csv"
    source.write_text("mailbox_email\njim@contoso.com\nnot an address\npam@contoso.com\n", encoding="utf-8")
    result = await run(service, "connect", str(source), "--retry-delay", "0", api_key=api_key)

    assert microsoft.stats.throttled > 0
    assert service.front.bulk_sizes == [3, 2]  # only the two throttled rows went again
    assert "2 connected, 1 failed, 2 retried" in result.stdout
    rows = results_of(tmp_path / "in.results.csv")
    assert [(r["success"], r["error"]) for r in rows] == [
        ("true", ""),
        ("false", "INVALID_EMAIL"),
        ("true", ""),
    ]


async def test_transient_failures_stop_after_the_last_attempt(
    service: Service, api_key: str, credential_id: int, microsoft: FakeMicrosoft, tmp_path: Path
) -> None:
    microsoft.faults.graph_retry_after = 0.1
    microsoft.faults.graph_unavailable_rate = 1.0
    source = tmp_path / "in.csv"
    source.write_text("mailbox_email\njim@contoso.com\n", encoding="utf-8")
    args = ["connect", str(source), "--retry-delay", "0", "--max-attempts", "2"]
    result = await run(service, *args, api_key=api_key)
    assert service.front.bulk_sizes == [1, 1]
    assert "0 connected, 1 failed, 1 retried" in result.stdout
    assert results_of(tmp_path / "in.results.csv")[0]["error"] == "MICROSOFT_UNAVAILABLE"


async def test_429_and_503_are_retried_after_retry_after(
    service: Service, api_key: str, credential_id: int, tmp_path: Path
) -> None:
    service.front.queued = [(429, "1"), (503, "0")]
    source = tmp_path / "in.csv"
    source.write_text("mailbox_email\njim@contoso.com\n", encoding="utf-8")
    started = time.monotonic()
    result = await run(service, "connect", str(source), api_key=api_key)
    assert time.monotonic() - started >= 1.0
    assert service.front.queued == []
    assert service.front.bulk_sizes == [1]
    assert "service answered 429: retrying in 1 s" in result.stderr
    assert "service answered 503: retrying in 0 s" in result.stderr
    assert results_of(tmp_path / "in.results.csv")[0]["success"] == "true"


async def test_connect_errors_are_clear(
    service: Service, api_key: str, credential_id: int, tmp_path: Path
) -> None:
    missing = await run(service, "connect", str(tmp_path / "nope.csv"), api_key=api_key, exit_code=2)
    assert "no such file" in missing.stderr

    wrong_columns = tmp_path / "wrong.csv"
    wrong_columns.write_text("email,name\njim@contoso.com,Jim\n", encoding="utf-8")
    refused = await run(service, "connect", str(wrong_columns), api_key=api_key, exit_code=2)
    assert "no mailbox_email column" in refused.stderr

    semicolons = tmp_path / "semicolons.csv"  # Excel's CSV where the list separator is ';'
    semicolons.write_text("email;name\njim@contoso.com;Jim\n", encoding="utf-8")
    refused = await run(service, "connect", str(semicolons), api_key=api_key, exit_code=2)
    assert refused.stderr.strip() == (
        "error: no mailbox_email column: the first row has ['email', 'name'] (the file seems to use ';' "
        "between columns); name the columns mailbox_email;display_name (a header row) or put the address "
        "first"
    )

    good = tmp_path / "good.csv"
    good.write_text("mailbox_email\njim@contoso.com\n", encoding="utf-8")
    unauthorized = await run(service, "connect", str(good), api_key="m365c_wrong", exit_code=1)
    assert "HTTP 401" in unauthorized.stderr
    assert "API key is missing, unknown or revoked" in unauthorized.stderr

    unknown = await run(service, "connect", str(good), "--credential-id", "999", api_key=api_key, exit_code=1)
    assert "INVALID_CREDENTIAL_ID: The credential does not exist" in unknown.stderr

    big = tmp_path / "big.csv"
    big.write_text("mailbox_email\n" + "".join(f"u{i}@contoso.com\n" for i in range(4)), encoding="utf-8")
    over = await run(service, "connect", str(big), "--batch-size", "4", api_key=api_key, exit_code=1)
    assert "TOO_MANY_ACCOUNTS" in over.stderr
    assert "--batch-size" in over.stderr
    assert not (tmp_path / "big.results.csv").exists()
    assert not (tmp_path / "nope.results.csv").exists()


async def test_an_unreachable_service_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    source = tmp_path / "in.csv"
    source.write_text("mailbox_email\njim@contoso.com\n", encoding="utf-8")
    result = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["connect", str(source), "--url", f"http://127.0.0.1:{closed}", "--api-key", "k"],
    )
    assert result.exit_code == 1
    assert f"cannot reach the service at http://127.0.0.1:{closed}" in result.stderr
    assert "Traceback" not in result.output


async def test_several_aliases_each_get_their_own_primary_address(
    service: Service, api_key: str, credential_id: int, tmp_path: Path
) -> None:
    source = tmp_path / "aliases.csv"
    source.write_text("mailbox_email\njimothy@contoso.com\noscar.martinez@contoso.com\n", encoding="utf-8")
    result = await run(service, "connect", str(source), api_key=api_key)
    fix = "Submit the mailbox's primary address instead:"
    assert f"WRONG_ALIAS (jimothy@contoso.com): {fix} jim@contoso.com." in result.stdout
    assert f"WRONG_ALIAS (oscar.martinez@contoso.com): {fix} oscar@contoso.com." in result.stdout
    assert "<primary_email>" not in result.stdout


async def test_a_503_hint_names_no_other_command(service: Service, api_key: str) -> None:
    service.front.path_suffix = "/credentials"
    service.front.queued = [(503, "0")] * 5  # every attempt of the client
    result = await run(service, "credentials", "list", api_key=api_key, exit_code=1)
    assert result.stderr.strip() == (
        "error: HTTP 503 (busy): Microsoft's identity platform (or the service's database) did not answer; "
        "nothing was saved. Wait for the Retry-After seconds, then retry (the `m365connect` client commands "
        "wait and retry by themselves a few times before they report it)."
    )
    assert service.front.queued == []


# ------------------------------------------------------------------------------------- credentials


async def test_credentials_add_list_rotate_delete(service: Service, api_key: str, tmp_path: Path) -> None:
    added = await run(
        service,
        "credentials",
        "add",
        "--tenant-id",
        sv.CONTOSO_TENANT,
        "--client-id",
        sv.WORKING_APP,
        "--secret-expires-at",
        "2030-01-31",
        "--name",
        "Graph app",
        api_key=api_key,
        input=f"{sv.WORKING_SECRET}\n",  # the hidden prompt
    )
    assert (
        "credential 1 saved: 'Graph app', cloud global, expires 2030-01-31T23:59:59Z, status VALID"
        in added.stdout
    )
    assert sv.WORKING_SECRET not in added.output

    reader = await run(
        service,
        "credentials",
        "add",
        "--tenant-id",
        sv.CONTOSO_DOMAIN,
        "--client-id",
        sv.READER_APP,
        "--secret-expires-at",
        "2030-01-31",
        api_key=api_key,
        M365CONNECT_CLIENT_SECRET=sv.READER_SECRET,
        M365CONNECT_LOGIN_URL="https://login.microsoftonline.us",
    )
    assert "credential 2 saved" in reader.stdout
    assert "lacks Mail.Send" in reader.stdout
    assert "Then run `m365connect credentials rotate 2` (the same secret will do)" in reader.stdout
    consent = f"https://login.microsoftonline.us/{sv.CONTOSO_DOMAIN}/adminconsent?client_id={sv.READER_APP}"
    assert consent in reader.stdout
    # No Mail.Send in the token: the advice for an app scoped with RBAC for Applications, the explanation's
    # own text for MAILBOX_ACCESS_DENIED with this app filled in.
    assert "If the app sends through Exchange RBAC for Applications" in reader.stdout
    assert f"Test-ServicePrincipalAuthorization -Identity {sv.READER_APP} -Resource <mailbox_email>" in (
        reader.stdout
    )
    assert f"New-ManagementRoleAssignment -App {sv.READER_APP}" in reader.stdout
    assert "RBAC for Applications" not in added.stdout  # an app with Mail.Send gets no such advice

    listed = await run(service, "credentials", "list", api_key=api_key)
    lines = {
        line.split()[1]: line for line in listed.stdout.splitlines() if line.split()[1:2] in (["1"], ["2"])
    }
    assert sv.WORKING_APP in lines["1"]
    assert "VALID" in lines["1"]
    assert "Mail.Send" in lines["2"]
    assert sv.WORKING_SECRET not in listed.output

    rotated = await run(
        service,
        "credentials",
        "rotate",
        "1",
        "--secret-expires-at",
        "2031-01-31",
        api_key=api_key,
        M365CONNECT_CLIENT_SECRET=sv.WORKING_SECRET_2,
    )
    assert "credential 1 rotated" in rotated.stdout
    assert "2031-01-31T23:59:59Z" in (await run(service, "credentials", "list", api_key=api_key)).stdout

    assert (
        "credential 2 deleted" in (await run(service, "credentials", "delete", "2", api_key=api_key)).stdout
    )
    gone = await run(service, "credentials", "delete", "2", api_key=api_key, exit_code=1)
    assert "HTTP 404" in gone.stderr
    assert "no object with this id" in gone.stderr


async def test_credential_errors_carry_their_explanation(service: Service, api_key: str) -> None:
    add = ["credentials", "add", "--tenant-id", sv.CONTOSO_TENANT, "--client-id", sv.WORKING_APP]
    wrong = await run(
        service,
        *add,
        "--secret-expires-at",
        "2030-01-31",
        api_key=api_key,
        input="not-the-secret\n",
        exit_code=1,
    )
    assert "INVALID_CLIENT_SECRET: Microsoft rejected the client secret" in wrong.stderr
    assert "not-the-secret" not in wrong.output.replace("Client secret (its value): ", "")

    as_argument = await run(
        service,
        *add,
        "--secret-expires-at",
        "2030-01-31",
        "--client-secret",
        "x",
        api_key=api_key,
        exit_code=2,
    )
    assert "No such option" in as_argument.output

    unauthorized = await run(service, "credentials", "list", api_key="m365c_wrong", exit_code=1)
    assert "HTTP 401" in unauthorized.stderr


# ------------------------------------------------------------------------------------ small pieces


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, 7.0),
        ("3", 3.0),
        ("0.25", 0.25),
        ("-4", 0.0),
        ("soon", 7.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ],
)
def test_retry_after_is_seconds_or_a_date(value: str | None, expected: float) -> None:
    assert retry_after_seconds(value, default=7.0) == expected


def test_a_windows_1252_file_and_a_tab_delimiter_are_read(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("Display Name\tMailbox-Email\r\nRenée\trenee@contoso.com\r\n".encode("cp1252"))
    read = read_input(path)
    assert (read.delimiter, read.bom) == ("\t", False)
    assert [(r.mailbox_email, r.display_name) for r in read.rows] == [("renee@contoso.com", "Renée")]


def test_fixes_that_differ_per_mailbox_are_listed_up_to_a_cap() -> None:
    aliases = [
        ItemResult.from_wire(
            {
                "success": False,
                "email": f"alias{n}@contoso.com",
                "error": "WRONG_ALIAS",
                "primary_email": f"user{n}@contoso.com",
            }
        )
        for n in range(MAX_FIXES_PER_CODE + 2)
    ]
    shown = io.StringIO()
    Console(file=shown, width=200).print(fixes(aliases, Context()))
    lines = shown.getvalue().splitlines()
    assert lines[1:] == [
        *(
            f"WRONG_ALIAS (alias{n}@contoso.com): Submit the mailbox's primary address instead: "
            f"user{n}@contoso.com."
            for n in range(MAX_FIXES_PER_CODE)
        ),
        "WRONG_ALIAS: 2 more mailboxes, see the explanation column of the results file",
    ]


def test_result_columns_are_the_documented_ones() -> None:
    header = io.StringIO()
    csv.writer(header).writerow(RESULT_COLUMNS)
    assert header.getvalue().strip() == (
        "mailbox_email,display_name,success,id,error,explanation,primary_email,spf_correct,dkim_correct,"
        "dmarc_correct,spf_reason,dkim_reason,dmarc_reason,mailbox_type"
    )


def _our_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    return {name for name in names if name.split(".")[0] == "m365connect"}


def test_the_client_imports_nothing_of_the_service_but_the_explanations_and_codes() -> None:
    package = Path(__file__).resolve().parent.parent / "src" / "m365connect"
    imported = set().union(*(_our_imports(path) for path in (package / "client").glob("*.py")))
    assert "m365connect.client.http" in imported  # the walk sees imports
    assert {name for name in imported if not name.startswith("m365connect.client")} <= {
        "m365connect.explanations",
        "m365connect.codes",
    }
    assert _our_imports(package / "explanations.py") == {"m365connect.codes"}
    assert _our_imports(package / "codes.py") == set()


async def test_webhooks_add_list_remove(service: Service, api_key: str) -> None:
    added = await run(
        service,
        "webhooks",
        "add",
        "https://93.184.215.14/hook",
        "--event-type",
        "mailbox.failing",
        "--event-type",
        "mailbox.recovered",
        "--description",
        "Ops",
        api_key=api_key,
    )
    assert "webhook 1 added: https://93.184.215.14/hook (mailbox.failing, mailbox.recovered)" in added.stdout
    secret = added.stdout.strip().splitlines()[-1]
    assert secret.startswith("whsec_")
    listed = await run(service, "webhooks", "list", api_key=api_key)
    row = next(line for line in listed.stdout.splitlines() if line.split()[1:2] == ["1"])
    assert "https://93.184.215.14/hook" in row
    assert "mailbox.failing, mailbox.recovered" in row
    assert secret not in listed.output
    refused = await run(service, "webhooks", "add", "http://127.0.0.1/hook", api_key=api_key, exit_code=1)
    assert "INVALID_WEBHOOK_URL" in refused.output
    removed = await run(service, "webhooks", "remove", "1", api_key=api_key)
    assert "webhook 1 removed" in removed.stdout
    empty = await run(service, "webhooks", "list", api_key=api_key)
    assert "no webhooks yet" in empty.stdout
    missing = await run(service, "webhooks", "remove", "1", api_key=api_key, exit_code=1)
    assert "404" in missing.output or "does not exist" in missing.output
