"""HTTP routes of Microsoft Graph credentials (API.md §2)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from m365connect.api_docs import COMMON, NOT_FOUND, GenericErrorBody, Responses, ValidationMessage
from m365connect.credentials import service
from m365connect.credentials.schemas import CredentialCreate, CredentialList, CredentialRead, CredentialUpdate
from m365connect.deps import CurrentAccount, SessionDep, StateDep

router = APIRouter(prefix="/rest/v2/mailboxes/microsoft/credentials", tags=["Microsoft Graph credentials"])

CredentialId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The credential's id")]

_VERIFY: Responses = {
    400: {"model": GenericErrorBody, "description": "Malformed body; `detail` names the field"},
    422: {"model": ValidationMessage, "description": "Rejected; `message` is a code (docs/api.md)"},
    503: {"model": GenericErrorBody, "description": "Microsoft's identity platform did not answer"},
}


@router.get("", responses=COMMON)
async def list_credentials(session: SessionDep, account_id: CurrentAccount) -> CredentialList:
    """List the account's Microsoft Graph credentials, oldest first (never a secret)."""
    credentials = await service.list_credentials(session, account_id=account_id)
    return CredentialList(credentials=[service.to_read(item) for item in credentials])


@router.post("", status_code=status.HTTP_201_CREATED, responses={**COMMON, **_VERIFY})
async def create_credential(
    body: CredentialCreate, session: SessionDep, state: StateDep, account_id: CurrentAccount
) -> CredentialRead:
    """Verify an Entra app registration against Microsoft and save it."""
    credential = await service.create_credential(
        session, state.credential_services, account_id=account_id, data=body
    )
    return service.to_read(credential)


@router.patch("/{credential_id}", responses={**COMMON, **_VERIFY, **NOT_FOUND})
async def update_credential(
    credential_id: CredentialId,
    body: CredentialUpdate,
    session: SessionDep,
    state: StateDep,
    account_id: CurrentAccount,
) -> CredentialRead:
    """Rename a credential, or rotate its secret (verified first; the old secret stays on failure)."""
    credential = await service.update_credential(
        session, state.credential_services, account_id=account_id, credential_id=credential_id, data=body
    )
    return service.to_read(credential)


@router.delete(
    "/{credential_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={
        **COMMON,
        **NOT_FOUND,
        422: {"model": ValidationMessage, "description": "Credential in use"},
    },
)
async def delete_credential(
    credential_id: CredentialId, session: SessionDep, account_id: CurrentAccount
) -> None:
    """Delete a credential unless an active mailbox uses it."""
    await service.delete_credential(session, account_id=account_id, credential_id=credential_id)
