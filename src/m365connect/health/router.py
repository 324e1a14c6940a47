"""On-demand verification (API.md 6): the background checks, run now, answered with the fresh object."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from m365connect.api.deps import CurrentAccount, StateDep
from m365connect.api.responses import COMMON, MICROSOFT_UNAVAILABLE, NOT_FOUND, Responses, codes
from m365connect.codes import ErrorCode
from m365connect.credentials import service as credentials
from m365connect.credentials.schemas import CredentialRead
from m365connect.health import service
from m365connect.mailboxes import service as mailboxes
from m365connect.mailboxes.schemas import MailboxRead
from m365connect.wire import MAX_ID

router = APIRouter(prefix="/rest/v2/mailboxes/microsoft")

MailboxId = Annotated[int, Path(ge=1, le=MAX_ID, description="The mailbox's id")]
CredentialId = Annotated[int, Path(ge=1, le=MAX_ID, description="The credential's id")]
_VERIFY: Responses = {
    **COMMON,
    **NOT_FOUND,
    422: codes(
        "The stored secret does not open with the key ring; nothing changed", ErrorCode.CREDENTIAL_UNREADABLE
    ),
    **MICROSOFT_UNAVAILABLE,
}


@router.post("/{mailbox_id}/verify", responses=_VERIFY, tags=["Microsoft mailboxes"])
async def verify_mailbox(mailbox_id: MailboxId, state: StateDep, account_id: CurrentAccount) -> MailboxRead:
    """Re-verify a connected mailbox against Microsoft now; the mailbox with its fresh `health`."""
    mailbox = await service.verify_mailbox(state, account_id=account_id, mailbox_id=mailbox_id)
    return mailboxes.to_read(mailbox)


@router.post("/credentials/{credential_id}/verify", responses=_VERIFY, tags=["Microsoft Graph credentials"])
async def verify_credential(
    credential_id: CredentialId, state: StateDep, account_id: CurrentAccount
) -> CredentialRead:
    """Verify a credential against Microsoft now; the credential with its fresh status and permissions."""
    credential = await service.verify_credential(state, account_id=account_id, credential_id=credential_id)
    return credentials.to_read(credential)
