"""HTTP routes of Microsoft Graph credentials (API.md §2)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Response, status

from m365connect.api.deps import CurrentAccount, SessionDep, StateDep, TransactionsDep
from m365connect.api.responses import COMMON, MICROSOFT_UNAVAILABLE, NOT_FOUND, Responses, bad_request, codes
from m365connect.codes import ErrorCode
from m365connect.credentials import service
from m365connect.credentials.schemas import (
    CREATE_EXAMPLES,
    UPDATE_EXAMPLES,
    CredentialCreate,
    CredentialList,
    CredentialRead,
    CredentialUpdate,
)
from m365connect.wire import MAX_ID

router = APIRouter(prefix="/rest/v2/mailboxes/microsoft/credentials", tags=["Microsoft Graph credentials"])

CredentialId = Annotated[int, Path(ge=1, le=MAX_ID, description="The credential's id")]

_REFUSALS = (
    ErrorCode.INVALID_TENANT_ID,
    ErrorCode.INVALID_CLIENT_ID,
    ErrorCode.INVALID_CLIENT_SECRET,
    ErrorCode.CLIENT_SECRET_EXPIRED,
    ErrorCode.INVALID_CERTIFICATE,
    ErrorCode.CERTIFICATE_NOT_REGISTERED,
)
_CREATE: Responses = {
    **COMMON,
    **bad_request(
        "Malformed body; `detail` names the field",
        "Field 'client_id' is required",
        "Field 'tenant_id' is invalid: Input should be a valid string",
        "Send either 'client_secret' or 'certificate', not both",
        "The request body is not valid JSON",
    ),
    422: codes(
        "Nothing saved; `message` is a code (docs/api.md)",
        *_REFUSALS,
        ErrorCode.CREDENTIAL_ALREADY_EXISTS,
        ErrorCode.CREDENTIAL_REJECTED,
    ),
    **MICROSOFT_UNAVAILABLE,
}
_UPDATE: Responses = {
    **COMMON,
    **NOT_FOUND,
    **bad_request(
        "Malformed body, an empty object, a null field, or only one of the two secret fields",
        "Send at least one of 'name', 'client_secret', 'secret_expires_at'",
        "Fields 'client_secret' and 'secret_expires_at' must be sent together",
        "Field 'name' must not be null",
    ),
    422: codes(
        "The new secret was refused; the old one stays in force", *_REFUSALS, ErrorCode.CREDENTIAL_REJECTED
    ),
    **MICROSOFT_UNAVAILABLE,
}
_DELETE: Responses = {
    **COMMON,
    **NOT_FOUND,
    422: codes("An ACTIVE mailbox uses the credential", ErrorCode.MICROSOFT_GRAPH_CREDENTIAL_IN_USE),
}


@router.get("", responses=COMMON)
async def list_credentials(session: SessionDep, account_id: CurrentAccount) -> CredentialList:
    """List the account's Microsoft Graph credentials, oldest first (never a secret)."""
    credentials = await service.list_credentials(session, account_id=account_id)
    return CredentialList(credentials=[service.to_read(item) for item in credentials])


@router.post("", status_code=status.HTTP_201_CREATED, responses=_CREATE)
async def create_credential(
    body: Annotated[CredentialCreate, Body(openapi_examples=CREATE_EXAMPLES)],
    transactions: TransactionsDep,
    state: StateDep,
    account_id: CurrentAccount,
) -> CredentialRead:
    """Verify an Entra app registration against Microsoft and save it."""
    credential = await service.create_credential(
        transactions, state.credential_services, account_id=account_id, data=body
    )
    return service.to_read(credential)


@router.patch("/{credential_id}", responses=_UPDATE)
async def update_credential(
    credential_id: CredentialId,
    body: Annotated[CredentialUpdate, Body(openapi_examples=UPDATE_EXAMPLES)],
    transactions: TransactionsDep,
    state: StateDep,
    account_id: CurrentAccount,
) -> CredentialRead:
    """Rename a credential, or rotate its secret (verified first; the old secret stays on failure)."""
    credential = await service.update_credential(
        transactions,
        state.credential_services,
        account_id=account_id,
        credential_id=credential_id,
        data=body,
    )
    return service.to_read(credential)


@router.delete(
    "/{credential_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response, responses=_DELETE
)
async def delete_credential(
    credential_id: CredentialId, session: SessionDep, account_id: CurrentAccount
) -> None:
    """Delete a credential unless an active mailbox uses it."""
    await service.delete_credential(session, account_id=account_id, credential_id=credential_id)
