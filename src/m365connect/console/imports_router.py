"""The import page: upload a CSV (the CLI's formats, read by the CLI's own csv_io), pick the credential, and
follow the bulk job it becomes: live progress, per-row results explained, the results CSV (the CLI's
columns and writer), and "retry the failed ones" as a new job. Every upload is a job, started by
jobs.service.start_job exactly as POST /bulk with `Prefer: respond-async` does; the request-level 422s are
the service's, shown next to their field."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import APIRouter, Request, status
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException

from m365connect.api.deps import StateDep
from m365connect.client.csv_io import (
    BOM,
    RESULT_COLUMNS,
    InputRow,
    item_context,
    parse_input,
    result_row,
    results_text,
)
from m365connect.client.errors import InputError
from m365connect.client.http import ItemResult
from m365connect.codes import ErrorCode
from m365connect.console.forms import FORM, FormState, explained, new_form_key, posted_form_key
from m365connect.console.service import Signed
from m365connect.console.web import (
    PREFIX,
    CsrfChecked,
    SignedIn,
    check_csrf,
    find,
    not_found,
    page,
    parse_id,
    redirect,
)
from m365connect.credentials import service as credentials
from m365connect.credentials.schemas import CredentialRead
from m365connect.errors import AppError, NotFound, ServiceUnavailable, ValidationCodeError
from m365connect.explanations import Context
from m365connect.jobs import service as jobs
from m365connect.jobs.models import CANCELLED, FINISHED, BulkJob
from m365connect.mailboxes.schemas import BulkRequest
from m365connect.state import AppState

router = APIRouter(prefix=PREFIX)
_MAX_PAGE = 10_000_000
# Where a refusal of jobs.service.start_job is shown; the others at the top of the form.
CODE_FIELDS = {
    ErrorCode.INVALID_CREDENTIAL_ID: "credential_id",
    ErrorCode.CREDENTIAL_ID_REQUIRED: "credential_id",
    ErrorCode.NO_VALID_CREDENTIAL: "credential_id",
    ErrorCode.EMPTY_ACCOUNTS: "file",
    ErrorCode.TOO_MANY_ACCOUNTS: "file",
}
RESULTS_CSV_DELIMITER = ","  # with a UTF-8 byte order mark: Excel then opens it as UTF-8
_SHOW = frozenset({"all", "failed"})  # the job page's ?show=: every row, or the failed rows only
_UNPROCESSED_RUNS_SHOWN = 10  # a cancelled import names its first runs of rows not processed


@dataclass(frozen=True)
class ResultView:
    """One row of the results table: position (1-based), the address and name, and its outcome."""

    number: int
    email: str
    name: str
    result: ItemResult | None
    explanation: str


async def _credentials(state: AppState, account_id: int) -> dict[int, CredentialRead]:
    async with state.sessions() as session:
        rows = await credentials.list_credentials(session, account_id=account_id)
        return {row.id: credentials.to_read(row) for row in rows}


def _page_number(raw: str) -> int | None:
    return int(raw) if raw.isascii() and raw.isdigit() and 1 <= int(raw) <= _MAX_PAGE else None


async def _import_page(
    request: Request,
    state: AppState,
    signed: Signed,
    *,
    upload: FormState | None = None,
    status_code: int = 200,
) -> Response:
    raw_page = request.query_params.get("page", "1")
    number = _page_number(raw_page)
    async with state.sessions() as session:
        recent = await jobs.list_page(session, account_id=signed.account_id, page=(number or 1) - 1)
    known = await _credentials(state, signed.account_id)
    kept = upload or FormState()
    if "credential_id" not in kept.values and len(known) == 1:
        kept.values["credential_id"] = str(next(iter(known)))
    return page(
        request,
        "import.html",
        signed=signed,
        status_code=status_code if number is not None else status.HTTP_400_BAD_REQUEST,
        title="Import mailboxes",
        upload=kept,
        form_key=new_form_key(),
        credentials=known,
        recent=recent,
        page_error=None if number is not None else f"A page is a number from 1 to {_MAX_PAGE}.",
        max_rows=state.jobs.max_accounts,
        max_megabytes=round(state.settings.max_job_body_bytes / 1_000_000, 1),
    )


@router.get("/import", include_in_schema=False)
async def show_import(request: Request, state: StateDep, signed: SignedIn) -> Response:
    return await _import_page(request, state, signed)


def _refused(kept: FormState, exc: AppError, *, max_rows: int) -> int:
    """A refusal of the service in the form's terms; the status of the answer."""
    if isinstance(exc, ValidationCodeError):
        message = f"{exc.code}: {explained(exc.code)}"
        if exc.code == ErrorCode.TOO_MANY_ACCOUNTS:
            message += f" An import holds at most {max_rows} rows: split the file."
        kept.errors[CODE_FIELDS.get(exc.code, FORM)] = message
        return status.HTTP_422_UNPROCESSABLE_CONTENT
    if isinstance(exc, ServiceUnavailable):  # the credential's token endpoint did not answer
        kept.errors[FORM] = exc.detail
        return status.HTTP_503_SERVICE_UNAVAILABLE
    raise exc


def _row_errors(exc: ValidationError, rows: list[InputRow]) -> dict[str, str]:
    """The first refused row of the file, named by its number among the file's mailboxes."""
    for error in exc.errors():
        location = error.get("loc", ())
        if len(location) >= 3 and location[0] == "accounts" and isinstance(location[1], int):
            shown = rows[location[1]].mailbox_email[:80]
            return {"file": f"Mailbox {location[1] + 1} ({shown!r}), {location[2]}: {error['msg']}"}
    return {"file": str(exc.errors()[0].get("msg", "The file was refused."))}


async def _read_upload(form: FormData, kept: FormState) -> list[InputRow] | None:
    """The rows of the uploaded file, or None with the reason in `kept`."""
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        kept.errors["file"] = "Choose a CSV file to upload."
        return None
    data = await upload.read()  # within M365CONNECT_MAX_JOB_BODY_BYTES: the edge counts every byte
    if not data.strip():
        kept.errors["file"] = f"{upload.filename} is empty: it has no mailbox."
        return None
    try:
        return parse_input(data, name=upload.filename).rows
    except InputError as exc:
        kept.errors["file"] = f"{upload.filename} cannot be read as a CSV of mailboxes: {exc}."
        return None


@router.post("/import", include_in_schema=False)
async def upload_csv(request: Request, state: StateDep, signed: SignedIn) -> Response:
    """Bounded before anything is read: a declared length over M365CONNECT_MAX_JOB_BODY_BYTES is refused
    at once (the edge stops any body that grows past it, declared or not)."""
    limit = state.settings.max_job_body_bytes
    declared = request.headers.get("content-length", "")
    kept = FormState()
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        kept.errors["file"] = (
            f"The file is too large: an upload holds at most {limit:,} bytes "
            "(M365CONNECT_MAX_JOB_BODY_BYTES). Split the file and import the parts."
        )
        return await _import_page(
            request, state, signed, upload=kept, status_code=status.HTTP_413_CONTENT_TOO_LARGE
        )
    try:
        form = await request.form(max_files=1, max_fields=10)
    except HTTPException as exc:  # not a form (malformed multipart, too many parts)
        kept.errors[FORM] = f"The upload could not be read ({exc.detail}). Choose the file again and send it."
        return await _import_page(
            request, state, signed, upload=kept, status_code=status.HTTP_400_BAD_REQUEST
        )
    await check_csrf(request)
    raw_credential = form.get("credential_id")
    kept.values["credential_id"] = raw_credential if isinstance(raw_credential, str) else ""
    try:
        rows = await _read_upload(form, kept)
    finally:
        await form.close()
    credential_id = parse_id(kept.values["credential_id"]) if kept.values["credential_id"] else None
    if kept.values["credential_id"] and credential_id is None:
        kept.errors["credential_id"] = "Choose one of your credentials."
    if rows is None or kept.failed:
        return await _import_page(request, state, signed, upload=kept, status_code=_upload_status(kept))
    try:
        body = BulkRequest.model_validate(
            {
                "credential_id": credential_id,
                "accounts": [
                    {"mailbox_email": row.mailbox_email}
                    | ({"display_name": row.display_name} if row.display_name is not None else {})
                    for row in rows
                ],
            }
        )
        job = await jobs.start_job(
            state.transactions,
            state.jobs,
            account_id=signed.account_id,
            request=body,
            idempotency_key=_idempotency_key(form.get("form_key")),
        )
    except ValidationError as exc:
        kept.errors = _row_errors(exc, rows)
        return await _import_page(
            request, state, signed, upload=kept, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT
        )
    except AppError as exc:
        code = _refused(kept, exc, max_rows=state.jobs.max_accounts)
        return await _import_page(request, state, signed, upload=kept, status_code=code)
    return redirect(f"{PREFIX}/imports/{job.id}")


def _upload_status(kept: FormState) -> int:
    """400 for a request without a file, 422 for a file that is not a CSV of mailboxes."""
    if kept.errors.get("file") == "Choose a CSV file to upload.":
        return status.HTTP_400_BAD_REQUEST
    return status.HTTP_422_UNPROCESSABLE_CONTENT


def _idempotency_key(value: object) -> str | None:
    """The form's one-time key as the job's Idempotency-Key: the same form posted twice (a reload of the
    answer, a double click) answers the job it made the first time."""
    key = posted_form_key(value)
    return f"console:{key}" if key is not None else None


async def _job(state: AppState, account_id: int, raw_id: str) -> BulkJob | None:
    async def load(session: AsyncSession, job_id: int) -> BulkJob:
        return await jobs.get_job(session, account_id=account_id, job_id=job_id)

    return await find(state.sessions, raw_id, load)


def _context(state: AppState, credential: CredentialRead | None) -> Context:
    """What the explanations fill in: the import's credential's tenant, app and cloud (while it exists)."""
    login_url = state.settings.login_url
    if credential is None:
        return Context(login_url=login_url)
    return Context(
        tenant_id=credential.tenant_id,
        client_id=credential.client_id,
        credential_id=credential.credential_id,
        login_url=login_url,
        cloud=credential.cloud,
    )


def _view(row: jobs.JobRow, base: Context) -> ResultView:
    item = ItemResult.from_wire(row.result) if row.result is not None else None
    explanation = ""
    if item is not None and item.error is not None:
        explanation = explained(item.error, item_context(item, base))
    name = (item.name if item is not None else None) or row.display_name or ""
    return ResultView(row.position + 1, row.mailbox_email, name, item, explanation)


@router.get("/imports/{raw_id}", include_in_schema=False)
async def show_job(raw_id: str, request: Request, state: StateDep, signed: SignedIn) -> Response:
    return await _job_page(request, state, signed, raw_id)


async def _job_page(
    request: Request,
    state: AppState,
    signed: Signed,
    raw_id: str,
    *,
    retry: FormState | None = None,
    cancel: FormState | None = None,
    status_code: int | None = None,
) -> Response:
    job = await _job(state, signed.account_id, raw_id)
    if job is None:
        return not_found(request, signed, what="import")
    number = _page_number(request.query_params.get("page", "1"))
    show = request.query_params.get("show", "all")
    failed_only = show == "failed"
    unprocessed: list[tuple[int, int]] = []
    async with state.sessions() as session:
        if failed_only:
            rows, shown_total = await jobs.failed_rows_page(
                session, account_id=signed.account_id, job_id=job.id, page=(number or 1) - 1
            )
        else:
            rows = await jobs.rows_page(
                session, account_id=signed.account_id, job_id=job.id, page=(number or 1) - 1
            )
            shown_total = job.total
        if job.status == CANCELLED:
            unprocessed = await jobs.unprocessed_ranges(
                session, account_id=signed.account_id, job_id=job.id, limit=_UNPROCESSED_RUNS_SHOWN + 1
            )
    known = await _credentials(state, signed.account_id)
    base = _context(state, known.get(job.credential_id))
    read = jobs.to_read(job)
    pages = max(1, -(-shown_total // jobs.RESULTS_PAGE_SIZE))
    page_error = None if number is not None else f"A page is a number from 1 to {_MAX_PAGE}."
    if show not in _SHOW:
        page_error = "Show is 'all' (every row) or 'failed' (the failed rows only)."
    return page(
        request,
        "import_job.html",
        signed=signed,
        status_code=status_code or (200 if page_error is None else status.HTTP_400_BAD_REQUEST),
        title=f"Import {job.id}",
        job=read,
        finished=job.status in FINISHED,
        cancelled=job.status == CANCELLED,
        unprocessed=unprocessed[:_UNPROCESSED_RUNS_SHOWN],
        more_unprocessed=len(unprocessed) > _UNPROCESSED_RUNS_SHOWN,
        not_processed=job.total - job.processed,
        retry_of=job.retry_of,
        failed_only=failed_only,
        shown_total=shown_total,
        credential=known.get(job.credential_id),
        rows=[_view(row, base) for row in rows],
        current=number or 1,
        pages=pages,
        page_error=page_error,
        retry=retry or FormState(values={"use_primary": "yes"}),
        cancel=cancel or FormState(),
        form_key=new_form_key(),
        head_refresh=job.status not in FINISHED,
    )


@router.post("/imports/{raw_id}/cancel", include_in_schema=False)
async def cancel_import(raw_id: str, request: Request, state: StateDep, signed: CsrfChecked) -> Response:
    """Cancel a queued or running import, as DELETE /bulk/jobs/{id} does (jobs.service.cancel): no row is
    connected after this answer; what is connected stays. A finished import is refused on its page."""
    job = await _job(state, signed.account_id, raw_id)
    if job is None:
        return not_found(request, signed, what="import")
    try:
        async with state.transactions.begin() as session:
            await jobs.cancel(
                session, account_id=signed.account_id, job_id=job.id, observer=state.jobs.observer
            )
    except ValidationCodeError as exc:  # JOB_ALREADY_FINISHED: it finished meanwhile
        kept = FormState(errors={FORM: f"{exc.code}: {explained(exc.code)}"})
        return await _job_page(request, state, signed, raw_id, cancel=kept, status_code=exc.status)
    except NotFound:
        return not_found(request, signed, what="import")
    return redirect(f"{PREFIX}/imports/{job.id}")


@router.get("/imports/{raw_id}/progress", include_in_schema=False)
async def show_progress(raw_id: str, request: Request, state: StateDep, signed: SignedIn) -> Response:
    """The progress fragment the job page's script swaps in every second while the job runs."""
    job = await _job(state, signed.account_id, raw_id)
    if job is None:
        return not_found(request, signed, what="import")
    return page(
        request, "import_progress.html", signed=signed, job=jobs.to_read(job), finished=job.status in FINISHED
    )


@router.get("/imports/{raw_id}/results.csv", include_in_schema=False)
async def download_results(raw_id: str, request: Request, state: StateDep, signed: SignedIn) -> Response:
    """The results CSV: the CLI's columns and writer, one row per submitted row, read 500 rows at a time."""
    job = await _job(state, signed.account_id, raw_id)
    if job is None:
        return not_found(request, signed, what="import")
    base = _context(state, (await _credentials(state, signed.account_id)).get(job.credential_id))
    account_id, job_id, total = signed.account_id, job.id, job.total

    async def lines() -> AsyncIterator[str]:
        yield BOM + results_text([RESULT_COLUMNS], delimiter=RESULTS_CSV_DELIMITER)
        for number in range(-(-total // jobs.RESULTS_PAGE_SIZE)):
            async with state.sessions() as session:
                rows = await jobs.rows_page(session, account_id=account_id, job_id=job_id, page=number)
            yield results_text(
                [
                    result_row(
                        InputRow(row.mailbox_email, row.display_name),
                        ItemResult.from_wire(row.result) if row.result is not None else None,
                        base,
                        job_id=job_id,
                    )
                    for row in rows
                ],
                delimiter=RESULTS_CSV_DELIMITER,
            )

    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="import-{job_id}.results.csv"'},
    )


@router.post("/imports/{raw_id}/retry", include_in_schema=False)
async def retry_failed(raw_id: str, request: Request, state: StateDep, signed: CsrfChecked) -> Response:
    """A new job of exactly the failed rows (their display names kept), with the import's credential;
    with "use the primary address" ticked, each WRONG_ALIAS row is sent as the primary address Microsoft
    reported for it (jobs.service.failed_accounts)."""
    job = await _job(state, signed.account_id, raw_id)
    if job is None:
        return not_found(request, signed, what="import")
    form = await request.form()
    kept = FormState(values={"use_primary": "yes" if form.get("use_primary") == "yes" else ""})
    if job.status not in FINISHED:
        kept.errors[FORM] = "This import is still running: retry its failed rows once it has finished."
        return await _job_page(request, state, signed, raw_id, retry=kept, status_code=422)
    async with state.sessions() as session:
        accounts = await jobs.failed_accounts(
            session, account_id=signed.account_id, job_id=job.id, use_primary=bool(kept.values["use_primary"])
        )
    if not accounts:
        kept.errors[FORM] = "No row of this import failed: there is nothing to retry."
        return await _job_page(request, state, signed, raw_id, retry=kept, status_code=422)
    try:
        started = await jobs.start_job(
            state.transactions,
            state.jobs,
            account_id=signed.account_id,
            request=BulkRequest(credential_id=job.credential_id, accounts=accounts),
            idempotency_key=_idempotency_key(form.get("form_key")),
            retry_of=job.id,
        )
    except AppError as exc:
        code = _refused(kept, exc, max_rows=state.jobs.max_accounts)
        if FORM not in kept.errors:  # the credential's refusal: the retry form has no credential field
            kept.errors = {FORM: next(iter(kept.errors.values()))}
        return await _job_page(request, state, signed, raw_id, retry=kept, status_code=code)
    return redirect(f"{PREFIX}/imports/{started.id}")
