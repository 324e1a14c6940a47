"""ServiceClient: the m365connect HTTP API over httpx, for the command-line client.

A whole request answered 429 or 503 is sent again after its Retry-After (bounded); every other error
status becomes an ApiError / CodeError. `transport=` is the seam for tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any

import httpx

from m365connect.client.errors import ApiError, CodeError, ServiceUnreachable
from m365connect.explanations import DEFAULT_CLOUD, Context

DEFAULT_URL = "http://127.0.0.1:8000"
BASE = "/rest/v2/mailboxes/microsoft"
WEBHOOKS = "/rest/v2/webhooks"
RETRY_STATUSES = frozenset({429, 503})

Sleep = Callable[[float], None]
OnWait = Callable[[int, float], None]


@dataclass(frozen=True)
class ItemResult:
    """One item of a bulk answer."""

    success: bool
    id: int | None
    email: str
    name: str | None
    error: str | None
    primary_email: str | None
    spf_correct: bool | None
    dkim_correct: bool | None
    already_connected: bool
    dmarc_correct: bool | None = None
    # Why each flag is what it is (docs/deliverability.md): `dns_error` tells a DNS failure from a wrong
    # record; None when the service did not check this time (an already connected mailbox).
    spf_reason: str | None = None
    dkim_reason: str | None = None
    dmarc_reason: str | None = None
    mailbox_type: str | None = None  # user | shared; None when the service could not tell

    @classmethod
    def from_wire(cls, item: dict[str, Any]) -> ItemResult:
        """Parse one element of the bulk endpoint's JSON array."""
        deliverability = item.get("deliverability") or {}
        return cls(
            success=bool(item.get("success")),
            id=item.get("id"),
            email=str(item.get("email", "")),
            name=item.get("name"),
            error=item.get("error"),
            primary_email=item.get("primary_email"),
            spf_correct=deliverability.get("spf_correct"),
            dkim_correct=deliverability.get("dkim_correct"),
            already_connected=bool(item.get("already_connected")),
            dmarc_correct=deliverability.get("dmarc_correct"),
            spf_reason=deliverability.get("spf_reason"),
            dkim_reason=deliverability.get("dkim_reason"),
            dmarc_reason=deliverability.get("dmarc_reason"),
            mailbox_type=item.get("mailbox_type"),
        )


def retry_after_seconds(value: str | None, *, default: float) -> float:
    """Retry-After as seconds (a number or an HTTP date); `default` when absent or unreadable."""
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class ServiceClient:
    """A running m365connect service, seen through one API key."""

    def __init__(
        self,
        *,
        url: str = DEFAULT_URL,
        api_key: str,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 300.0,
        max_attempts: int = 5,
        max_wait: float = 60.0,
        sleep: Sleep = time.sleep,
        on_wait: OnWait | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            headers={"x-api-key": api_key, "User-Agent": "m365connect-cli/0.1"},
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=transport,
        )
        self._max_attempts = max_attempts
        self._max_wait = max_wait
        self._sleep = sleep
        self._on_wait = on_wait

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # ------------------------------------------------------------------------------ credentials
    def list_credentials(self) -> list[dict[str, Any]]:
        """Every credential of the account, oldest first."""
        credentials: list[dict[str, Any]] = self._json("GET", f"{BASE}/credentials")["credentials"]
        return credentials

    def add_credential(
        self,
        *,
        tenant_id: str,
        client_id: str,
        client_secret: str | None = None,
        secret_expires_at: str | None = None,
        name: str | None = None,
        cloud: str = DEFAULT_CLOUD,
        certificate: str | None = None,
        certificate_password: str | None = None,
    ) -> dict[str, Any]:
        """Verify and store an app registration (a secret, or a certificate: PEM text or base64 PKCS#12);
        the stored credential."""
        body = {"tenant_id": tenant_id, "client_id": client_id, "cloud": cloud}
        body.update(
            _secret_fields(
                client_secret=client_secret,
                secret_expires_at=secret_expires_at,
                certificate=certificate,
                certificate_password=certificate_password,
            )
        )
        if name is not None:
            body["name"] = name
        context = Context(tenant_id=tenant_id, client_id=client_id, cloud=cloud)
        created: dict[str, Any] = self._json("POST", f"{BASE}/credentials", json=body, context=context)
        return created

    def rotate_credential(
        self,
        credential_id: int,
        *,
        client_secret: str | None = None,
        secret_expires_at: str | None = None,
        certificate: str | None = None,
        certificate_password: str | None = None,
    ) -> dict[str, Any]:
        """Replace a credential's secret or certificate (verified first); the credential."""
        body = _secret_fields(
            client_secret=client_secret,
            secret_expires_at=secret_expires_at,
            certificate=certificate,
            certificate_password=certificate_password,
        )
        rotated: dict[str, Any] = self._json("PATCH", f"{BASE}/credentials/{credential_id}", json=body)
        return rotated

    def delete_credential(self, credential_id: int) -> None:
        """Delete a credential that no connected mailbox uses."""
        self._request("DELETE", f"{BASE}/credentials/{credential_id}")

    # ------------------------------------------------------------------------------ webhooks
    def list_webhooks(self) -> list[dict[str, Any]]:
        """Every webhook subscription of the account, oldest first."""
        webhooks: list[dict[str, Any]] = self._json("GET", WEBHOOKS)["webhooks"]
        return webhooks

    def add_webhook(
        self, *, url: str, event_types: list[str] | None, description: str | None
    ) -> dict[str, Any]:
        """Subscribe a URL; the subscription with its secret (shown only in this answer)."""
        body: dict[str, Any] = {"url": url}
        if event_types:
            body["event_types"] = event_types
        if description is not None:
            body["description"] = description
        created: dict[str, Any] = self._json("POST", WEBHOOKS, json=body)
        return created

    def remove_webhook(self, webhook_id: int) -> None:
        """Delete a subscription."""
        self._request("DELETE", f"{WEBHOOKS}/{webhook_id}")

    # ------------------------------------------------------------------------------ mailboxes
    def bulk(self, accounts: list[dict[str, str]], *, credential_id: int | None) -> list[ItemResult]:
        """Connect mailboxes; one result per submitted item, in order."""
        body: dict[str, Any] = {"accounts": accounts}
        if credential_id is not None:
            body["credential_id"] = credential_id
        items: list[dict[str, Any]] = self._json("POST", f"{BASE}/bulk", json=body)
        if len(items) != len(accounts):
            raise ApiError(200, f"expected {len(accounts)} results, got {len(items)}")
        return [ItemResult.from_wire(item) for item in items]

    def verify_mailbox(self, mailbox_id: int) -> dict[str, Any]:
        """Re-verify a connected mailbox now; the mailbox with its fresh `health`."""
        mailbox: dict[str, Any] = self._json("POST", f"{BASE}/{mailbox_id}/verify")
        return mailbox

    # ------------------------------------------------------------------------------ bulk jobs
    def start_job(
        self, accounts: list[dict[str, str]], *, credential_id: int | None, idempotency_key: str
    ) -> dict[str, Any]:
        """Start a bulk job (`Prefer: respond-async`); the job object of the 202. The same key with the
        same body answers the same job (within 24 h on the service)."""
        body: dict[str, Any] = {"accounts": accounts}
        if credential_id is not None:
            body["credential_id"] = credential_id
        job_headers = {"Prefer": "respond-async", "Idempotency-Key": idempotency_key}
        job: dict[str, Any] = self._request("POST", f"{BASE}/bulk", json=body, headers=job_headers).json()
        return job

    def get_job(self, job_id: int) -> dict[str, Any]:
        """The job object now."""
        job: dict[str, Any] = self._json("GET", f"{BASE}/bulk/jobs/{job_id}")
        return job

    def job_results(self, job_id: int, page: int) -> dict[str, Any]:
        """One page of a job's results: {"content": [item + "index"], "pagination_data"}."""
        results: dict[str, Any] = self._json("GET", f"{BASE}/bulk/jobs/{job_id}/results?page={page}")
        return results

    # ------------------------------------------------------------------------------ events
    def list_events(self, *, after: int, limit: int) -> dict[str, Any]:
        """One page of the account's events after the cursor: {"events": [...], "next_after": id}."""
        page: dict[str, Any] = self._json("GET", f"/rest/v2/events?after={after}&limit={limit}")
        return page

    # ------------------------------------------------------------------------------ plumbing
    def _json(self, method: str, path: str, *, json: Any = None, context: Context | None = None) -> Any:
        return self._request(method, path, json=json, context=context).json()

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        context: Context | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        delay = 1.0
        for attempt in range(1, self._max_attempts + 1):
            try:
                response = self._http.request(method, path, json=json, headers=headers)
            except httpx.TransportError as exc:
                raise ServiceUnreachable(self.url, str(exc) or type(exc).__name__) from None
            if response.status_code not in RETRY_STATUSES or attempt == self._max_attempts:
                break
            wait = min(
                retry_after_seconds(response.headers.get("Retry-After"), default=delay), self._max_wait
            )
            if self._on_wait is not None:
                self._on_wait(response.status_code, wait)
            self._sleep(wait)
            delay *= 2
        if response.is_success:
            return response
        raise _error_of(response, context)


def _secret_fields(
    *,
    client_secret: str | None,
    secret_expires_at: str | None,
    certificate: str | None,
    certificate_password: str | None,
) -> dict[str, str]:
    """The body fields that are given (the service says which combinations it accepts)."""
    fields = {
        "client_secret": client_secret,
        "secret_expires_at": secret_expires_at,
        "certificate": certificate,
        "certificate_password": certificate_password,
    }
    return {name: value for name, value in fields.items() if value is not None}


def _error_of(response: httpx.Response, context: Context | None) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code == 422 and isinstance(body, dict) and isinstance(body.get("message"), str):
        return CodeError(body["message"], context)
    detail = body.get("detail") if isinstance(body, dict) else None
    return ApiError(response.status_code, detail if isinstance(detail, str) else None, context)
