"""The one vocabulary of error codes the API answers: every 422 `{"message": CODE}` and every per-item
`error` of POST /bulk (docs/api.md). Services raise them, the Microsoft tables map to them, the
explanations describe them and the tests name them: a code that is not here cannot be answered.

Imports nothing of ours, so every layer (microsoft/ and the command-line client included) may use it.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """An UPPER_SNAKE error code; its value is its name."""

    # 422 of POST /bulk: the request as a whole cannot be processed (nothing is connected).
    UNSUPPORTED_AUTH_TYPE = "UNSUPPORTED_AUTH_TYPE"
    EMPTY_ACCOUNTS = "EMPTY_ACCOUNTS"
    TOO_MANY_ACCOUNTS = "TOO_MANY_ACCOUNTS"
    INVALID_CREDENTIAL_ID = "INVALID_CREDENTIAL_ID"
    CREDENTIAL_ID_REQUIRED = "CREDENTIAL_ID_REQUIRED"
    NO_VALID_CREDENTIAL = "NO_VALID_CREDENTIAL"
    CREDENTIAL_UNREADABLE = "CREDENTIAL_UNREADABLE"  # the stored secret does not open with the key ring
    # 422 of the credential routes (the first five also come from Microsoft's identity platform).
    INVALID_TENANT_ID = "INVALID_TENANT_ID"
    INVALID_CLIENT_ID = "INVALID_CLIENT_ID"
    INVALID_CLIENT_SECRET = "INVALID_CLIENT_SECRET"
    CLIENT_SECRET_EXPIRED = "CLIENT_SECRET_EXPIRED"
    CREDENTIAL_REJECTED = "CREDENTIAL_REJECTED"
    CREDENTIAL_ALREADY_EXISTS = "CREDENTIAL_ALREADY_EXISTS"
    INVALID_CERTIFICATE = "INVALID_CERTIFICATE"  # unparsable, no key, key not the certificate's, weak
    CERTIFICATE_NOT_REGISTERED = "CERTIFICATE_NOT_REGISTERED"  # Microsoft does not know it for the app
    MICROSOFT_GRAPH_CREDENTIAL_IN_USE = "MICROSOFT_GRAPH_CREDENTIAL_IN_USE"
    # 422 of the webhook routes (API.md 6).
    INVALID_WEBHOOK_URL = "INVALID_WEBHOOK_URL"  # not https, userinfo, another port, a non-public address
    UNKNOWN_EVENT_TYPE = "UNKNOWN_EVENT_TYPE"
    TOO_MANY_WEBHOOKS = "TOO_MANY_WEBHOOKS"  # the account has MAX_WEBHOOKS_PER_ACCOUNT subscriptions
    # 422 of the bulk job routes (API.md 7).
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"  # the Idempotency-Key came with another body
    JOB_ALREADY_FINISHED = "JOB_ALREADY_FINISHED"  # DELETE of a DONE or CANCELLED job
    # Per-item `error` of POST /bulk.
    INVALID_EMAIL = "INVALID_EMAIL"
    DUPLICATE_EMAIL = "DUPLICATE_EMAIL"
    MAILBOX_ALREADY_CONNECTED = "MAILBOX_ALREADY_CONNECTED"
    MAILBOX_NOT_FOUND = "MAILBOX_NOT_FOUND"
    WRONG_ALIAS = "WRONG_ALIAS"
    MAILBOX_DISABLED = "MAILBOX_DISABLED"
    UNSUPPORTED_MAILBOX_TYPE = "UNSUPPORTED_MAILBOX_TYPE"
    NO_EXCHANGE_MAILBOX = "NO_EXCHANGE_MAILBOX"
    MISSING_PERMISSIONS = "MISSING_PERMISSIONS"
    MAILBOX_ACCESS_DENIED = "MAILBOX_ACCESS_DENIED"
    MICROSOFT_THROTTLED = "MICROSOFT_THROTTLED"
    MICROSOFT_UNAVAILABLE = "MICROSOFT_UNAVAILABLE"
    # A bulk job's item whose chunk the service could not run (jobs/sweep.py): never connected, resubmit it
    JOB_ITEM_NOT_PROCESSED = "JOB_ITEM_NOT_PROCESSED"
    # A mailbox's `health.error` besides the per-item codes: its credential no longer obtains a token.
    CREDENTIAL_EXPIRED = "CREDENTIAL_EXPIRED"
    CREDENTIAL_INVALID = "CREDENTIAL_INVALID"


_E = ErrorCode
ITEM_CODES: frozenset[ErrorCode] = frozenset(
    {
        _E.INVALID_EMAIL,
        _E.DUPLICATE_EMAIL,
        _E.MAILBOX_ALREADY_CONNECTED,
        _E.MAILBOX_NOT_FOUND,
        _E.WRONG_ALIAS,
        _E.MAILBOX_DISABLED,
        _E.UNSUPPORTED_MAILBOX_TYPE,
        _E.NO_EXCHANGE_MAILBOX,
        _E.MISSING_PERMISSIONS,
        _E.MAILBOX_ACCESS_DENIED,
        _E.MICROSOFT_THROTTLED,
        _E.MICROSOFT_UNAVAILABLE,
        _E.JOB_ITEM_NOT_PROCESSED,
    }
)
"""The codes a bulk result's `error` can carry; every other code is a 422 `message`."""
HEALTH_CODES: frozenset[ErrorCode] = frozenset({_E.CREDENTIAL_EXPIRED, _E.CREDENTIAL_INVALID})
"""The codes only a mailbox's `health.error` carries (it also carries the definitive ITEM_CODES)."""
REQUEST_CODES: frozenset[ErrorCode] = frozenset(ErrorCode) - ITEM_CODES - HEALTH_CODES
