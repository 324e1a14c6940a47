"""The credentials page: list with status, countdown, permissions and consent link; add, rename, rotate,
delete. Every change goes through credentials.service, exactly as the API's routes do."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import APIRouter, Request, status
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData, UploadFile

from m365connect.api.deps import StateDep
from m365connect.console import forms
from m365connect.console.forms import FormState
from m365connect.console.service import Signed
from m365connect.console.views import consent_context, credential_view
from m365connect.console.web import PREFIX, CsrfChecked, SignedIn, find, not_found, page, redirect
from m365connect.credentials import service
from m365connect.credentials.schemas import CredentialRead
from m365connect.errors import AppError, ServiceUnavailable
from m365connect.health import service as health
from m365connect.microsoft.clouds import CLOUD_NAMES
from m365connect.state import AppState

router = APIRouter(prefix=f"{PREFIX}/credentials")
DONE = {
    "created": "The credential was verified with Microsoft and saved.",
    "renamed": "The credential was renamed.",
    "rotated": "The new secret was verified with Microsoft and is now in use.",
    "deleted": "The credential was deleted.",
    "verified": "The credential was verified with Microsoft just now: see its status below.",
}


async def _fields(form: FormData) -> dict[str, str | None]:
    """The form's text fields, with an uploaded certificate file read as the API takes it."""
    fields: dict[str, str | None] = {k: v for k, v in form.items() if isinstance(v, str)}
    upload = form.get("certificate")
    if isinstance(upload, UploadFile):
        content = await upload.read()
        fields["certificate"] = forms.certificate_text(content) if content else None
    await form.close()  # the upload's temporary file
    return fields


async def _credentials(state: AppState, account_id: int) -> list[CredentialRead]:
    async with state.sessions() as session:
        rows = await service.list_credentials(session, account_id=account_id)
        return [service.to_read(row) for row in rows]


async def _one(state: AppState, account_id: int, raw_id: str) -> CredentialRead | None:
    async def load(session: AsyncSession, credential_id: int) -> CredentialRead:
        found = await service.get_credential(session, account_id=account_id, credential_id=credential_id)
        return service.to_read(found)

    return await find(state.sessions, raw_id, load)


async def _list_page(
    request: Request, state: AppState, signed: Signed, *, add: FormState | None = None, status_code: int = 200
) -> Response:
    login_url = state.settings.login_url
    items = [
        credential_view(item, login_url=login_url) for item in await _credentials(state, signed.account_id)
    ]
    return page(
        request,
        "credentials.html",
        signed=signed,
        status_code=status_code,
        title="Credentials",
        credentials=items,
        add=add or FormState(values={"kind": "secret", "cloud": "global"}),
        clouds=CLOUD_NAMES,
        done=DONE.get(request.query_params.get("done", "")),
    )


def _status_of(refusal: AppError | None) -> int:
    """503 when Microsoft could not be reached (retrying later may work), else 422 (fix the form)."""
    if isinstance(refusal, ServiceUnavailable):
        return status.HTTP_503_SERVICE_UNAVAILABLE
    return status.HTTP_422_UNPROCESSABLE_CONTENT


@router.get("", include_in_schema=False)
async def show_credentials(request: Request, state: StateDep, signed: SignedIn) -> Response:
    return await _list_page(request, state, signed)


@router.post("", include_in_schema=False)
async def add_credential(request: Request, state: StateDep, signed: CsrfChecked) -> Response:
    fields = await _fields(await request.form())
    kept = FormState(values=forms.kept_values(fields))
    refusal: AppError | None = None
    try:
        body = forms.create_body(fields)
        await service.create_credential(
            state.transactions, state.credential_services, account_id=signed.account_id, data=body
        )
    except ValidationError as exc:
        kept.errors = forms.validation_errors(exc)
    except AppError as exc:
        kept.errors = forms.service_errors(exc)
        refusal = exc
    if kept.failed:
        return await _list_page(request, state, signed, add=kept, status_code=_status_of(refusal))
    return redirect(f"{PREFIX}/credentials", done="created")


async def _edit_page(
    request: Request,
    state: AppState,
    signed: Signed,
    item: CredentialRead,
    *,
    forms_state: Mapping[str, FormState] | None = None,
    status_code: int = 200,
) -> Response:
    login_url = state.settings.login_url
    states = dict(forms_state or {})
    return page(
        request,
        "credential.html",
        signed=signed,
        status_code=status_code,
        title=f"Credential {item.name}",
        view=credential_view(item, login_url=login_url),
        rename=states.get("rename") or FormState(values={"name": item.name}),
        rotate=states.get("rotate") or FormState(values={"kind": "secret"}),
        delete=states.get("delete") or FormState(),
        verify=states.get("verify") or FormState(),
        context=consent_context(item, login_url=login_url),
    )


@router.get("/{raw_id}", include_in_schema=False)
async def show_credential(raw_id: str, request: Request, state: StateDep, signed: SignedIn) -> Response:
    item = await _one(state, signed.account_id, raw_id)
    if item is None:
        return not_found(request, signed, what="credential")
    return await _edit_page(request, state, signed, item)


@router.post("/{raw_id}/{action}", include_in_schema=False)
async def change_credential(
    raw_id: str, action: str, request: Request, state: StateDep, signed: CsrfChecked
) -> Response:
    item = await _one(state, signed.account_id, raw_id)
    if item is None or action not in ("rename", "rotate", "delete", "verify"):
        return not_found(request, signed, what="credential")
    if action == "verify":
        return await _verify(request, state, signed, item)
    fields = await _fields(await request.form())
    result = FormState(values=forms.kept_values(fields))
    context = consent_context(item, login_url=state.settings.login_url)
    refusal: AppError | None = None
    try:
        if action == "delete" and fields.get("confirm") != "yes":
            result.errors = {forms.FORM: "Nothing was deleted: tick the box to confirm first."}
        elif action == "delete":
            async with state.transactions.begin() as session:
                await service.delete_credential(
                    session, account_id=signed.account_id, credential_id=item.credential_id
                )
        else:
            body = forms.rename_body(fields) if action == "rename" else forms.rotate_body(fields)
            await service.update_credential(
                state.transactions,
                state.credential_services,
                account_id=signed.account_id,
                credential_id=item.credential_id,
                data=body,
            )
    except ValidationError as exc:
        result.errors = forms.validation_errors(exc)
    except AppError as exc:
        result.errors = forms.service_errors(exc, context)
        refusal = exc
    if result.failed:
        return await _edit_page(
            request,
            state,
            signed,
            item,
            forms_state={action: result},
            status_code=_status_of(refusal),
        )
    done = {"rename": "renamed", "rotate": "rotated", "delete": "deleted"}[action]
    return redirect(f"{PREFIX}/credentials", done=done)


async def _verify(request: Request, state: AppState, signed: Signed, item: CredentialRead) -> Response:
    """Verify now (health.service, as POST .../verify does); a refusal is shown on the credential's page."""
    try:
        await health.verify_credential(state, account_id=signed.account_id, credential_id=item.credential_id)
    except AppError as exc:
        context = consent_context(item, login_url=state.settings.login_url)
        result = FormState(errors=forms.service_errors(exc, context))
        return await _edit_page(
            request, state, signed, item, forms_state={"verify": result}, status_code=_status_of(exc)
        )
    return redirect(f"{PREFIX}/credentials", done="verified")
