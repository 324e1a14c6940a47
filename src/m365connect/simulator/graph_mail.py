"""Graph's Exchange-backed endpoints: GET /users/{key}/mailboxSettings and POST /users/{key}/sendMail."""

from __future__ import annotations

import base64
import binascii
import email
import json
import uuid
from datetime import UTC, datetime
from email.utils import getaddresses
from typing import Any

from m365connect.simulator.directory import DirectoryUser
from m365connect.simulator.exchange_rbac import has_send_assignment, may_send
from m365connect.simulator.graph_core import (
    ACCESS_DENIED,
    ODATA_JSON,
    GraphError,
    GraphRequest,
    GraphResponse,
    member,
    property_named,
)

SETTINGS_ROLES = frozenset({"MailboxSettings.Read", "MailboxSettings.ReadWrite"})
SEND_ROLES = frozenset({"Mail.Send"})
_UNREADABLE = (
    "Unable to read JSON request payload. "
    "Please ensure Content-Type header is set and payload is of valid JSON format."
)
_RECIPIENT_FIELDS = ("toRecipients", "ccRecipients", "bccRecipients")


def mailbox_of(request: GraphRequest, key: str) -> DirectoryUser:
    """The user's mailbox as Exchange finds it: unknown user, no mailbox, or app blocked by policy."""
    user = request.caller.tenant.user(key)
    if user is None:
        raise GraphError(404, "ErrorInvalidUser", f"The requested user '{key}' is invalid.")
    # A user mailbox whose licences were all removed is disconnected by Exchange (a shared mailbox needs
    # none): Graph answers as for no mailbox (docs/simulator.md, "Changing a tenant at run time").
    if user.mailbox == "none" or (user.mailbox == "user" and not user.licenses):
        message = "The mailbox is either inactive, soft-deleted, or is hosted on-premise."
        raise GraphError(404, "MailboxNotEnabledForRESTAPI", message)
    if request.caller.app_id in user.blocked_apps:
        raise GraphError(403, "ErrorAccessDenied", "Access to OData is disabled.")
    return user


def _settings(user: DirectoryUser) -> dict[str, Any]:
    """A mailbox's settings with Exchange's defaults; userPurpose is the mailbox type."""
    schedule = {"dateTime": "2024-01-01T00:00:00.0000000", "timeZone": "UTC"}
    return {
        "archiveFolder": base64.urlsafe_b64encode(uuid.UUID(user.id).bytes).decode().rstrip("="),
        "timeZone": "UTC",
        "delegateMeetingMessageDeliveryOptions": "sendToDelegateOnly",
        "dateFormat": "M/d/yyyy",
        "timeFormat": "h:mm tt",
        "userPurpose": user.mailbox,
        "automaticRepliesSetting": {
            "status": "disabled",
            "externalAudience": "all",
            "internalReplyMessage": "",
            "externalReplyMessage": "",
            "scheduledStartDateTime": schedule,
            "scheduledEndDateTime": schedule,
        },
        "language": {"locale": "en-US", "displayName": "English (United States)"},
        "workingHours": {
            "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
            "startTime": "08:00:00.0000000",
            "endTime": "17:00:00.0000000",
            "timeZone": {"name": "UTC"},
        },
    }


def mailbox_settings(request: GraphRequest, key: str) -> GraphResponse:
    """GET /users/{key}/mailboxSettings[?$select=...]: needs MailboxSettings.Read(Write)."""
    request.caller.require(SETTINGS_ROLES, GraphError(403, "ErrorAccessDenied", ACCESS_DENIED))
    settings = _settings(mailbox_of(request, key))
    quoted = key.replace("'", "''")  # an OData string literal, as in users('...')
    context = f"{request.service_root}/$metadata#users('{quoted}')/mailboxSettings"
    select = request.options().get("$select")
    if select is None or not select.strip():
        return GraphResponse(200, {"@odata.context": context, **settings}, {"Content-Type": ODATA_JSON})
    names = []
    for raw in (part.strip() for part in select.split(",")):
        name = property_named(raw, settings)
        if name is None:
            message = f"Could not find a property named '{raw}' on type 'microsoft.graph.mailboxSettings'."
            raise GraphError(400, "RequestBroker--ParseUri", message)
        names.append(name)
    body = {"@odata.context": f"{context}({','.join(names)})", **{n: settings[n] for n in names}}
    return GraphResponse(200, body, {"Content-Type": ODATA_JSON})


def send_mail(request: GraphRequest, key: str, sent: list[dict[str, Any]]) -> GraphResponse:
    """POST /users/{key}/sendMail (JSON or base64 MIME): 202 with no body; the message goes to sent.

    Authorisation comes before the message is read, so a message without recipients from an authorised
    app answers 400 ErrorInvalidRecipients and one from an unauthorised app 403 ErrorAccessDenied
    (docs/graph-client.md, the send probe); neither is sent.
    """
    user = _sender(request, key)
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type == "text/plain":
        message, mime, save = None, _mime(request.body), True
        recipients = [a for _, a in getaddresses(_mime_recipient_headers(mime)) if a]
    elif media_type == "application/json":
        message, save = _json_message(request.body)
        mime, recipients = None, _json_recipients(message)
    else:
        raise GraphError(400, "BadRequest", _UNREADABLE)
    if not recipients:
        message_text = (
            "At least one recipient isn't valid., A message can't be sent because it contains no recipients."
        )
        raise GraphError(400, "ErrorInvalidRecipients", message_text)
    sent.append(
        {
            "id": str(uuid.uuid4()),
            "received_at": datetime.now(UTC).isoformat(),
            "tenant_id": request.caller.tenant.id,
            "client_id": request.caller.app_id,
            "user_id": user.id,
            "user_principal_name": user.user_principal_name,
            "from": user.mail,
            "recipients": recipients,
            "save_to_sent_items": save,
            "message": message,
            "mime": mime,
        }
    )
    return GraphResponse(202)


def _sender(request: GraphRequest, key: str) -> DirectoryUser:
    """The mailbox to send as, if Entra's Mail.Send or an Exchange role assignment in effect allows it."""
    caller, denied = request.caller, GraphError(403, "ErrorAccessDenied", ACCESS_DENIED)
    grants = caller.tenant.exchange_grants
    if caller.roles & SEND_ROLES:  # the union: an Entra grant covers every mailbox
        return mailbox_of(request, key)
    if not has_send_assignment(grants, caller.app_id):
        raise denied
    user = mailbox_of(request, key)
    if not may_send(grants, caller.app_id, user.id):
        raise denied
    return user


def _json_message(body: bytes) -> tuple[dict[str, Any], bool]:
    """The message object and saveToSentItems (default true) of a JSON sendMail body."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise GraphError(400, "BadRequest", _UNREADABLE) from None
    if not isinstance(payload, dict):
        raise GraphError(400, "BadRequest", _UNREADABLE)
    message = member(payload, "message")
    if not isinstance(message, dict) or not message:
        raise GraphError(400, "ErrorInvalidParameter", "The value of the parameter 'Message' is empty.")
    save = member(payload, "saveToSentItems", True)
    if isinstance(save, str) and save.lower() in ("true", "false"):
        save = save.lower() == "true"
    if not isinstance(save, bool):
        raise GraphError(400, "BadRequest", _UNREADABLE)
    return message, save


def _json_recipients(message: dict[str, Any]) -> list[str]:
    addresses = []
    for field in _RECIPIENT_FIELDS:
        recipients = member(message, field) or []
        if not isinstance(recipients, list):
            raise GraphError(400, "BadRequest", _UNREADABLE)
        for recipient in recipients:
            address = _recipient_address(recipient)
            if not isinstance(address, str) or "@" not in address:
                raise GraphError(400, "ErrorInvalidRecipients", "At least one recipient isn't valid.")
            addresses.append(address)
    return addresses


def _recipient_address(recipient: Any) -> Any:
    email_address = member(recipient, "emailAddress") if isinstance(recipient, dict) else None
    return member(email_address, "address") if isinstance(email_address, dict) else None


def _mime(body: bytes) -> str:
    try:
        return base64.b64decode(body.strip(), validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        raise GraphError(
            400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."
        ) from None


def _mime_recipient_headers(mime: str) -> list[str]:
    parsed = email.message_from_string(mime)
    return [value for name in ("To", "Cc", "Bcc") for value in parsed.get_all(name, [])]
