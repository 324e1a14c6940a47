"""The console's import page (over the real ASGI stack, both databases, the bundled simulator): an upload
becomes a bulk job (jobs.service.start_job, as POST /bulk with respond-async); the job page shows live
progress, then each row with its explanation; the results CSV has the CLI's columns; "retry the failed
ones" starts a job of exactly the failed rows. Upload errors are form errors, never a 500."""

from __future__ import annotations

import asyncio
import csv
import html
import io
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from m365connect.app import create_app
from m365connect.client.csv_io import BOM, RESULT_COLUMNS
from m365connect.codes import ErrorCode
from m365connect.explanations import EXPLANATIONS
from m365connect.jobs import service as jobs
from m365connect.jobs.models import BulkJob, BulkJobItem
from m365connect.settings import Settings
from m365connect.state import AppState, open_state
from tests.conftest import truncate
from tests.console.pages import csrf_of, sign_in
from tests.factories import CREDENTIALS, create_credential
from tests.helpers import headers
from tests.jobs.support import JOBS, all_results, working
from tests.work.helpers import PG_WORK_TABLES

IMPORT = "/console/import"
ALIAS, PRIMARY = "oscar.martinez@contoso.com", "oscar@contoso.com"  # an alias (smtp:) in the scenario
GOOD_CSV = (
    f"mailbox_email;display_name\r\njim@contoso.com;Jim H\r\n{ALIAS};Oscar M\r\npam@contoso.com;Pam B\r\n"
)
_FORM_KEY = re.compile(r'name="form_key" value="([^"]+)"')
_JOB_PAGE = re.compile(r"^/console/imports/(\d+)$")


@pytest.fixture
async def import_settings(settings: Settings, backend: str, database_url: str) -> AsyncIterator[Settings]:
    """Quick polls and waves, a small job limit (5 rows) and a small upload limit (4 KB)."""
    if backend == "postgresql":
        await truncate(database_url, PG_WORK_TABLES[:-1])
    yield settings.model_copy(
        update={
            "work_poll_seconds": 0.05,
            "bulk_job_wave_delays": "0.1,0.1",
            "max_accounts_per_job": 5,
            "max_job_body_bytes": 4096,
        }
    )
    if backend == "postgresql":
        await truncate(database_url, PG_WORK_TABLES[:-1])


@pytest.fixture
async def import_state(import_settings: Settings) -> AsyncIterator[AppState]:
    async with open_state(import_settings) as built:
        yield built


@pytest.fixture
async def api(import_settings: Settings, import_state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(
        app=create_app(import_settings, state=import_state), raise_app_exceptions=False
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://m365connect.test") as http:
        yield http


@pytest.fixture
async def browser(
    import_settings: Settings, import_state: AppState, api_key: str
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(
        app=create_app(import_settings, state=import_state), raise_app_exceptions=False
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://m365connect.test") as http:
        assert (await sign_in(http, api_key)).status_code == 303
        yield http


async def import_form(browser: httpx.AsyncClient) -> tuple[str, str]:
    """The import page's CSRF token and one-time form key."""
    shown = await browser.get(IMPORT)
    assert shown.status_code == 200, shown.text
    key = _FORM_KEY.search(shown.text)
    assert key is not None
    return csrf_of(shown.text), key.group(1)


async def upload(
    browser: httpx.AsyncClient,
    content: bytes | None,
    *,
    credential_id: int | str | None,
    token: str,
    form_key: str = "",
    filename: str = "mailboxes.csv",
) -> httpx.Response:
    data = {"csrf_token": token, "credential_id": "" if credential_id is None else str(credential_id)}
    if form_key:
        data["form_key"] = form_key
    files = {"file": (filename, content, "text/csv")} if content is not None else None
    return await browser.post(IMPORT, data=data, files=files)


def job_of(answer: httpx.Response) -> int:
    assert answer.status_code == 303, answer.text[:2000]
    found = _JOB_PAGE.match(answer.headers["location"])
    assert found is not None, answer.headers["location"]
    return int(found.group(1))


async def until_finished(api: httpx.AsyncClient, api_key: str, job_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        job: dict[str, Any] = (await api.get(f"{JOBS}/{job_id}", headers=headers(api_key))).json()
        if job["status"] == "DONE":
            return job
        assert time.monotonic() < deadline, job
        await asyncio.sleep(0.05)


async def job_count(api: httpx.AsyncClient, api_key: str) -> int:
    listed = await api.get(JOBS, headers=headers(api_key))
    assert listed.status_code == 200
    return int(listed.json()["pagination_data"]["total_elements"])


async def test_an_upload_is_a_job_explained_row_by_row_downloaded_and_its_failed_rows_retried(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, api_key: str, import_state: AppState
) -> None:
    credential = await create_credential(api, api_key=api_key)
    cid = credential["credential_id"]
    token, key = await import_form(browser)
    job_id = job_of(await upload(browser, GOOD_CSV.encode(), credential_id=cid, token=token, form_key=key))
    # The answer reloaded (the same form posted again) is the same job, not a second one.
    assert (
        job_of(await upload(browser, GOOD_CSV.encode(), credential_id=cid, token=token, form_key=key))
        == job_id
    )
    assert await job_count(api, api_key) == 1

    async with working(import_state):
        job = await until_finished(api, api_key, job_id)
    assert (job["total"], job["connected"], job["failed"], job["credential_id"]) == (3, 2, 1, cid)

    shown = await browser.get(f"/console/imports/{job_id}")
    assert shown.status_code == 200
    text = html.unescape(shown.text)
    assert "data-poll" not in shown.text
    assert "http-equiv" not in shown.text
    assert '<progress id="import-progress" max="3" value="3"' in shown.text
    failed_rows = re.findall(r'<tr id="row-(\d+)" class="failed">', shown.text)
    assert failed_rows == ["2"]
    wrong_alias = EXPLANATIONS[ErrorCode.WRONG_ALIAS]
    assert f"{wrong_alias.meaning} Submit the mailbox's primary address instead: {PRIMARY}." in text
    assert "Jim H" in text
    assert "Retry the failed rows" in text
    listed = await browser.get(IMPORT)
    assert f'href="/console/imports/{job_id}"' in listed.text

    download = await browser.get(f"/console/imports/{job_id}/results.csv")
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    assert f'filename="import-{job_id}.results.csv"' in download.headers["content-disposition"]
    assert download.text.startswith(BOM)
    table = list(csv.reader(io.StringIO(download.text.removeprefix(BOM), newline="")))
    assert tuple(table[0]) == RESULT_COLUMNS
    rows = [dict(zip(RESULT_COLUMNS, row, strict=True)) for row in table[1:]]
    assert [(r["mailbox_email"], r["display_name"], r["success"]) for r in rows] == [
        ("jim@contoso.com", "Jim H", "true"),
        (ALIAS, "Oscar M", "false"),
        ("pam@contoso.com", "Pam B", "true"),
    ]
    assert (rows[1]["error"], rows[1]["primary_email"]) == ("WRONG_ALIAS", PRIMARY)
    assert PRIMARY in rows[1]["explanation"]

    # Without "use the primary address", the failed row as it was; with it, the primary address.
    async with import_state.sessions() as session:
        row = await session.get(BulkJob, job_id)
        assert row is not None
        as_sent = await jobs.failed_accounts(
            session, account_id=row.account_id, job_id=job_id, use_primary=False
        )
    assert [(a.mailbox_email, a.display_name) for a in as_sent] == [(ALIAS, "Oscar M")]
    retry_key = _FORM_KEY.search(shown.text)
    assert retry_key is not None
    retried = await browser.post(
        f"/console/imports/{job_id}/retry",
        data={"csrf_token": token, "use_primary": "yes", "form_key": retry_key.group(1)},
    )
    retry_id = job_of(retried)
    assert retry_id != job_id
    async with working(import_state):
        again = await until_finished(api, api_key, retry_id)
    assert (again["total"], again["connected"], again["failed"], again["credential_id"]) == (1, 1, 0, cid)
    [item] = await all_results(api, api_key, retry_id)
    assert (item["email"], item["name"], item["success"]) == (PRIMARY, "Oscar M", True)
    finished = await browser.get(f"/console/imports/{retry_id}")
    assert "Retry the failed rows" not in finished.text  # nothing failed
    retries = f'retries the failed rows of <a href="/console/imports/{job_id}">import {job_id}</a>'
    assert retries in finished.text
    assert "retries the failed rows of" not in shown.text  # the first import retried nothing
    nothing = await browser.post(f"/console/imports/{retry_id}/retry", data={"csrf_token": token})
    assert nothing.status_code == 422
    assert "nothing to retry" in nothing.text
    assert await job_count(api, api_key) == 2


async def test_a_running_import_shows_its_progress_and_polls_a_fragment(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, api_key: str
) -> None:
    cid = (await create_credential(api, api_key=api_key))["credential_id"]
    token, _key = await import_form(browser)
    job_id = job_of(await upload(browser, GOOD_CSV.encode(), credential_id=cid, token=token))
    shown = await browser.get(f"/console/imports/{job_id}")  # no engine runs: the job stays QUEUED
    assert shown.status_code == 200
    assert f'data-poll="/console/imports/{job_id}/progress"' in shown.text
    assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in shown.text
    assert '<script src="/console/static/progress.js" defer></script>' in shown.text
    assert '<progress id="import-progress" max="3" value="0" aria-labelledby="progress-label">' in shown.text
    assert "Retry the failed rows" not in shown.text
    assert shown.text.count(">waiting<") == 3
    fragment = await browser.get(f"/console/imports/{job_id}/progress")
    assert fragment.status_code == 200
    assert fragment.text.lstrip().startswith('<div id="progress-body" data-finished="false">')
    assert "<html" not in fragment.text
    script = await browser.get("/console/static/progress.js")
    assert script.status_code == 200
    assert "progress-body" in script.text
    early = await browser.post(f"/console/imports/{job_id}/retry", data={"csrf_token": token})
    assert early.status_code == 422
    assert "still running" in early.text
    assert (await browser.get(f"/console/imports/{job_id}?page=0")).status_code == 400


async def test_upload_errors_are_form_errors_and_start_no_job(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, api_key: str
) -> None:
    token, _key = await import_form(browser)
    no_credential = await upload(browser, GOOD_CSV.encode(), credential_id=None, token=token)
    assert no_credential.status_code == 422
    assert 'id="credential_id-error"' in no_credential.text
    assert f"NO_VALID_CREDENTIAL: {EXPLANATIONS[ErrorCode.NO_VALID_CREDENTIAL].meaning}" in html.unescape(
        no_credential.text
    )

    cid = (await create_credential(api, api_key=api_key))["credential_id"]
    cases: list[tuple[bytes | None, int | str | None, int, str]] = [
        (None, cid, 400, "Choose a CSV file to upload."),
        (b"", cid, 422, "mailboxes.csv is empty"),
        (
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00",
            cid,
            422,
            "cannot be read as a CSV of mailboxes: no",
        ),
        (b"name,address\nJim,jim@contoso.com\n", cid, 422, "no mailbox_email column"),
        (b"mailbox_email\n,\n \n", cid, 422, "no mailbox in mailboxes.csv"),
        (b"".join(b"user%d@contoso.com\n" % i for i in range(6)), cid, 422, "TOO_MANY_ACCOUNTS"),
        (GOOD_CSV.encode(), "abc", 422, "Choose one of your credentials."),
        (GOOD_CSV.encode(), 987654, 422, "INVALID_CREDENTIAL_ID"),
        (f"jim@contoso.com,{'J' * 300}\n".encode(), cid, 422, "Mailbox 1 ('jim@contoso.com'), display_name"),
    ]
    for content, credential, status_code, message in cases:
        answer = await upload(browser, content, credential_id=credential, token=token)
        assert answer.status_code == status_code, (message, answer.text[:3000])
        assert answer.headers["content-type"].startswith("text/html")
        assert message in html.unescape(answer.text), (message, answer.text[:3000])
        assert 'role="alert"' in answer.text
    too_many = await upload(browser, cases[5][0], credential_id=cid, token=token)
    assert "An import holds at most 5 rows" in too_many.text

    # Over M365CONNECT_MAX_JOB_BODY_BYTES (4 KB here): refused from its declared length, as a form error.
    large = await upload(
        browser, b"mailbox_email\n" + b"someone@contoso.com\n" * 300, credential_id=cid, token=token
    )
    assert large.status_code == 413
    assert large.headers["content-type"].startswith("text/html")
    assert "The file is too large: an upload holds at most 4,096 bytes" in large.text

    refused = await browser.post(IMPORT, files={"file": ("m.csv", GOOD_CSV.encode(), "text/csv")})
    assert refused.status_code == 403
    assert await job_count(api, api_key) == 0


async def test_another_accounts_import_is_not_found(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, other_api_key: str, api_key: str
) -> None:
    cid = (await create_credential(api, api_key=other_api_key))["credential_id"]
    started = await api.post(
        "/rest/v2/mailboxes/microsoft/bulk",
        json={"credential_id": cid, "accounts": [{"mailbox_email": "jim@contoso.com"}]},
        headers={**headers(other_api_key), "Prefer": "respond-async"},
    )
    assert started.status_code == 202
    theirs = started.json()["job_id"]
    token, _key = await import_form(browser)
    for path in ("", "/progress", "/results.csv"):
        assert (await browser.get(f"/console/imports/{theirs}{path}")).status_code == 404
    assert (
        await browser.post(f"/console/imports/{theirs}/retry", data={"csrf_token": token})
    ).status_code == 404
    assert (await browser.get("/console/imports/nope")).status_code == 404
    assert f"/console/imports/{theirs}" not in (await browser.get(IMPORT)).text
    assert await job_count(api, api_key) == 0


async def test_a_retry_after_the_credential_was_deleted_is_refused_on_the_page(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, api_key: str, import_state: AppState
) -> None:
    cid = (await create_credential(api, api_key=api_key))["credential_id"]
    token, _key = await import_form(browser)
    job_id = job_of(await upload(browser, f"{ALIAS}\n".encode(), credential_id=cid, token=token))
    async with working(import_state):
        assert (await until_finished(api, api_key, job_id))["failed"] == 1
    deleted = await api.delete(f"{CREDENTIALS}/{cid}", headers=headers(api_key))
    assert deleted.status_code == 204
    retried = await browser.post(
        f"/console/imports/{job_id}/retry", data={"csrf_token": token, "use_primary": "yes"}
    )
    assert retried.status_code == 422
    assert 'class="error form-error" role="alert">INVALID_CREDENTIAL_ID: ' in retried.text
    assert f"{cid} (deleted)" in retried.text
    assert await job_count(api, api_key) == 1


async def _record(
    state: AppState, job_id: int, results: dict[int, bool], *, status: str | None = None
) -> None:
    """Write results as a chunk would (position -> success) and the job's counts, without the engine."""
    async with state.transactions.begin() as session:
        for position, success in results.items():
            result: dict[str, Any] = {"success": success, "email": f"row{position}@contoso.com"}
            if not success:
                result["error"] = ErrorCode.MAILBOX_NOT_FOUND
            await session.execute(
                update(BulkJobItem)
                .where(BulkJobItem.job_id == job_id, BulkJobItem.position == position)
                .values(result=result)
            )
        job = await session.get(BulkJob, job_id)
        assert job is not None
        job.processed = len(results)
        job.connected = sum(results.values())
        job.failed = len(results) - job.connected
        if status is not None:
            job.status = status


def _csv(rows: int) -> bytes:
    return ("mailbox_email\r\n" + "".join(f"row{n}@contoso.com\r\n" for n in range(rows))).encode()


async def test_a_running_import_is_cancelled_from_its_page_which_names_the_rows_not_processed(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, api_key: str, import_state: AppState
) -> None:
    cid = (await create_credential(api, api_key=api_key))["credential_id"]
    token, _key = await import_form(browser)
    job_id = job_of(await upload(browser, _csv(5), credential_id=cid, token=token))
    await _record(import_state, job_id, {0: True, 2: False}, status="RUNNING")  # no engine: as if running
    running = await browser.get(f"/console/imports/{job_id}")
    assert f'action="/console/imports/{job_id}/cancel"' in running.text
    assert (await browser.post(f"/console/imports/{job_id}/cancel", data={})).status_code == 403  # no CSRF

    cancelled = await browser.post(f"/console/imports/{job_id}/cancel", data={"csrf_token": token})
    assert cancelled.status_code == 303
    assert cancelled.headers["location"] == f"/console/imports/{job_id}"
    job = (await api.get(f"{JOBS}/{job_id}", headers=headers(api_key))).json()
    assert (job["status"], job["processed"]) == ("CANCELLED", 2)  # the API's cancel: jobs.service.cancel
    shown = await browser.get(f"/console/imports/{job_id}")
    assert shown.status_code == 200
    assert "This import was cancelled at " in shown.text
    assert "3 of 5 rows were not processed (rows 2, 4&ndash;5)" in shown.text
    assert "/cancel" not in shown.text  # a finished import has no cancel button
    assert "data-poll" not in shown.text
    assert shown.text.count("The import was cancelled before this row; submit it again.") == 3

    again = await browser.post(f"/console/imports/{job_id}/cancel", data={"csrf_token": token})
    assert again.status_code == 422
    assert f"{ErrorCode.JOB_ALREADY_FINISHED}: " in html.unescape(again.text)
    other = await browser.post("/console/imports/999999/cancel", data={"csrf_token": token})
    assert other.status_code == 404


async def test_the_failed_rows_only_filter_pages_the_failed_rows(
    browser: httpx.AsyncClient,
    api: httpx.AsyncClient,
    api_key: str,
    import_state: AppState,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(jobs, "RESULTS_PAGE_SIZE", 2)  # 5 rows: pages of 2 rows
    cid = (await create_credential(api, api_key=api_key))["credential_id"]
    token, _key = await import_form(browser)
    job_id = job_of(await upload(browser, _csv(5), credential_id=cid, token=token))
    await _record(import_state, job_id, {0: True, 1: False, 2: True, 3: False, 4: False}, status="DONE")

    first = await browser.get(f"/console/imports/{job_id}?show=failed")
    assert first.status_code == 200
    assert re.findall(r'<tr id="row-(\d+)"', first.text) == ["2", "4"]
    assert "Failed rows, page 1 of 2" in first.text
    assert f'href="/console/imports/{job_id}?show=failed&page=2" rel="next"' in html.unescape(first.text)
    second = await browser.get(f"/console/imports/{job_id}?show=failed&page=2")
    assert re.findall(r'<tr id="row-(\d+)"', second.text) == ["5"]
    every = await browser.get(f"/console/imports/{job_id}")
    assert re.findall(r'<tr id="row-(\d+)"', every.text) == ["1", "2"]
    assert "Results, page 1 of 3" in every.text
    assert (await browser.get(f"/console/imports/{job_id}?show=nothing")).status_code == 400

    clean = job_of(await upload(browser, _csv(1), credential_id=cid, token=token))
    await _record(import_state, clean, {0: True}, status="DONE")
    none = await browser.get(f"/console/imports/{clean}?show=failed")
    assert none.status_code == 200
    assert "No row of this import failed." in none.text
    assert "<tr id=" not in none.text
