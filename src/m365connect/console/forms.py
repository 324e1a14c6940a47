"""Console forms: the posted fields become the API's own request models, and whatever the service refuses
becomes a message next to the field it is about, with docs/errors.md's meaning and fix.

The rules stay where they are: the models validate, the service decides; this module only translates
their answers into a form's terms.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import ValidationError

from m365connect.codes import ErrorCode
from m365connect.console.service import new_random_token
from m365connect.credentials.schemas import CERTIFICATE_LENGTH, CredentialCreate, CredentialUpdate
from m365connect.errors import AppError, BadRequest, NotFound, ServiceUnavailable, ValidationCodeError
from m365connect.explanations import EXPLANATIONS, Context

# Which field a refusal code is about; the others are about the form as a whole.
CODE_FIELDS: Mapping[str, str] = {
    ErrorCode.INVALID_TENANT_ID: "tenant_id",
    ErrorCode.INVALID_CLIENT_ID: "client_id",
    ErrorCode.INVALID_CLIENT_SECRET: "client_secret",
    ErrorCode.CLIENT_SECRET_EXPIRED: "client_secret",
    ErrorCode.INVALID_CERTIFICATE: "certificate",
    ErrorCode.CERTIFICATE_NOT_REGISTERED: "certificate",
}
FORM = "form"  # the key of an error about the whole form
SECRET_FIELDS = frozenset({"client_secret", "certificate", "certificate_password"})
_FIELD_NAMED = re.compile(r"'([a-z_]+)'")
# A form's one-time key (new_random_token: 43 URL-safe characters).
_FORM_KEY = re.compile(r"[A-Za-z0-9_-]{16,64}")


def new_form_key() -> str:
    """A one-time key for a form that makes something (macros.html `one_time_key`): the form posted twice
    (a double click, a reload of the answer) carries the same key, and the thing it made answers the
    second post: the import's job (its Idempotency-Key), the webhook subscription (its form_key)."""
    return new_random_token()


def posted_form_key(value: object) -> str | None:
    """The posted one-time key when it looks like one (else the post simply has none)."""
    return value if isinstance(value, str) and _FORM_KEY.fullmatch(value) else None


@dataclass
class FormState:
    """What the form shows again after a refusal: the values typed (never a secret) and the errors."""

    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """Whether something was refused."""
        return bool(self.errors)


def kept_values(form: Mapping[str, object]) -> dict[str, str]:
    """The text fields to show again: secrets are never sent back to the browser."""
    return {
        name: value
        for name, value in form.items()
        if isinstance(value, str) and name not in SECRET_FIELDS and name != "csrf_token"
    }


def certificate_text(content: bytes) -> str:
    """An uploaded certificate file as the API takes it: PEM as text, anything else (PKCS#12) as base64.
    Too long a file is refused by the request model's length limit like the API's."""
    if content.lstrip().startswith(b"-----BEGIN"):
        return content.decode("ascii", errors="replace")
    if len(content) > CERTIFICATE_LENGTH:
        return "x" * (CERTIFICATE_LENGTH + 1)  # the model refuses it with its own message
    return base64.b64encode(content).decode("ascii")


def _blank_to_none(value: str | None) -> str | None:
    return value if value else None


def create_body(fields: Mapping[str, str | None]) -> CredentialCreate:
    """The creation request from the add form (raises pydantic's ValidationError)."""
    kind = fields.get("kind") or "secret"
    data: dict[str, object] = {
        "tenant_id": fields.get("tenant_id") or "",
        "client_id": fields.get("client_id") or "",
        "cloud": fields.get("cloud") or "global",
    }
    if name := _blank_to_none(fields.get("name")):
        data["name"] = name
    if kind == "certificate":
        data["certificate"] = fields.get("certificate") or ""
        if password := _blank_to_none(fields.get("certificate_password")):
            data["certificate_password"] = password
        if expires := _blank_to_none(fields.get("secret_expires_at")):
            data["secret_expires_at"] = expires
    else:
        data["client_secret"] = fields.get("client_secret") or ""
        data["secret_expires_at"] = fields.get("secret_expires_at") or ""
    return CredentialCreate.model_validate(data)


def rotate_body(fields: Mapping[str, str | None]) -> CredentialUpdate:
    """A rotation request from the rotate form: a new secret with its expiry, or a new certificate."""
    if (fields.get("kind") or "secret") == "certificate":
        data: dict[str, object] = {"certificate": fields.get("certificate") or ""}
        if password := _blank_to_none(fields.get("certificate_password")):
            data["certificate_password"] = password
        if expires := _blank_to_none(fields.get("secret_expires_at")):
            data["secret_expires_at"] = expires
    else:
        data = {
            "client_secret": fields.get("client_secret") or "",
            "secret_expires_at": fields.get("secret_expires_at") or "",
        }
    return CredentialUpdate.model_validate(data)


def rename_body(fields: Mapping[str, str | None]) -> CredentialUpdate:
    """A rename request from the rename form."""
    return CredentialUpdate.model_validate({"name": fields.get("name") or ""})


def explained(code: str, context: Context | None = None) -> str:
    """A code's meaning and fix, as docs/errors.md says them."""
    entry = EXPLANATIONS.get(code)
    if entry is None:
        return code
    return f"{entry.meaning} {entry.render_fix(context)}"


def validation_errors(exc: ValidationError) -> dict[str, str]:
    """Each refused field with pydantic's reason (the first one per field)."""
    errors: dict[str, str] = {}
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ())]
        name = location[0] if location else FORM
        message = "This field is required." if error.get("type") == "missing" else str(error.get("msg"))
        if error.get("type") in ("string_too_short",) and name in SECRET_FIELDS | {"tenant_id", "client_id"}:
            message = "This field is required."
        errors.setdefault(name, message)
    return errors


def service_errors(exc: AppError, context: Context | None = None) -> dict[str, str]:
    """A refusal of the service as form errors (a field when it names one, else the whole form)."""
    if isinstance(exc, ValidationCodeError):
        return {CODE_FIELDS.get(exc.code, FORM): f"{exc.code}: {explained(exc.code, context)}"}
    if isinstance(exc, BadRequest):
        detail = exc.detail
        named = _FIELD_NAMED.search(detail)
        return {named.group(1) if named else FORM: detail}
    if isinstance(exc, ServiceUnavailable):
        return {FORM: exc.detail}
    if isinstance(exc, NotFound):
        return {FORM: "This credential no longer exists (it was deleted meanwhile)."}
    raise exc
