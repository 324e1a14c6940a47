"""The one table of human explanations: every error code and error status the API answers, what it
means and how to fix it. Rendered into docs/errors.md and shown by the command-line client.

Regenerate the page after a change: `python -m m365connect.explanations > docs/errors.md`.
Imports only the code vocabulary (m365connect.codes), so the client package can use it without the
service's domain packages.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from m365connect.codes import ErrorCode

DEFAULT_CLOUD = "global"
# Microsoft's login host per national cloud, for consent links. A copy of microsoft/clouds.py's table,
# because the client imports this module and nothing of the service (tests/microsoft/test_clouds.py
# checks that the two agree).
CONSENT_LOGIN_URLS = MappingProxyType(
    {
        "global": "https://login.microsoftonline.com",
        "usgov": "https://login.microsoftonline.us",
        "usgov-dod": "https://login.microsoftonline.us",
        "china": "https://login.partner.microsoftonline.cn",
    }
)
DEFAULT_LOGIN_URL = CONSENT_LOGIN_URLS[DEFAULT_CLOUD]
# What a domain publishes for a tenant of each cloud: the SPF include and where the DKIM CNAMEs point. A copy
# of deliverability/clouds.py's table, for the same reason (tests/test_explanations.py checks they agree).
SPF_INCLUDES = MappingProxyType(
    {
        "global": "spf.protection.outlook.com",
        "usgov": "spf.protection.office365.us",
        "usgov-dod": "spf.protection.office365.us",
        "china": "spf.protection.partner.outlook.cn",
    }
)
DKIM_TARGETS = MappingProxyType(
    {
        "global": "<tenant>.onmicrosoft.com (or, for domains added since May 2025, "
        "<tenant>.<partition>-v1.dkim.mail.microsoft)",
        "usgov": "<tenant>.onmicrosoft.us",
        "usgov-dod": "<tenant>.onmicrosoft.us",
        "china": "<tenant>.partner.onmschina.cn",
    }
)
REQUIRED_PERMISSIONS = ("User.Read.All", "Mail.Send")


class Where(StrEnum):
    """Where a code appears in the API's answers."""

    ITEM = "per-item `error` of POST /bulk"
    CODE_422 = '422 `{"message": CODE}`'
    STATUS = "HTTP status (generic error body)"
    REASON = "reason of a false deliverability flag (`spf_reason`, `dkim_reason`)"
    HEALTH = "mailbox `health.error` (background verification)"


@dataclass(frozen=True)
class Context:
    """What is known about the failure; the unknown parts render as `<placeholder>`."""

    mailbox_email: str | None = None
    primary_email: str | None = None
    tenant_id: str | None = None
    client_id: str | None = None
    credential_id: int | None = None
    # The global cloud's login URL (M365CONNECT_LOGIN_URL); another cloud's consent is at its own host.
    login_url: str = DEFAULT_LOGIN_URL
    cloud: str = DEFAULT_CLOUD


@dataclass(frozen=True)
class Explanation:
    """One code: what it means and how to fix it (`fix` may name {mailbox_email}, {primary_email},
    {tenant_id}, {client_id}, {credential_id}, {consent_url}, and the cloud's {spf_include} and
    {dkim_target})."""

    code: ErrorCode | str  # an ErrorCode, or an HTTP status such as "401"
    where: Where
    meaning: str
    fix: str
    retryable: bool = field(default=False)

    def render_fix(self, context: Context | None = None, *, missing: str = "<{}>") -> str:
        """The fix with the known values filled in; an unknown one becomes `missing` with its name."""
        return self.fix.format_map(_values(context or Context(), missing=missing))

    def text(self, context: Context | None = None) -> str:
        """Meaning and fix in one line."""
        return f"{self.meaning} {self.render_fix(context)}"


def admin_consent_url(
    *, tenant_id: str, client_id: str, login_url: str = DEFAULT_LOGIN_URL, cloud: str = DEFAULT_CLOUD
) -> str:
    """The URL at which a tenant's administrator grants the app's permissions, on the login host of the
    credential's cloud (`login_url` is the global cloud's; an administrator consents at the real host
    of a national cloud, since only Microsoft's portal can grant the consent)."""
    if cloud != DEFAULT_CLOUD and cloud in CONSENT_LOGIN_URLS:
        login_url = CONSENT_LOGIN_URLS[cloud]
    return f"{login_url.rstrip('/')}/{tenant_id}/adminconsent?client_id={client_id}"


def _values(context: Context, *, missing: str) -> dict[str, str]:
    tenant = context.tenant_id or missing.format("tenant_id")
    client = context.client_id or missing.format("client_id")
    return {
        "mailbox_email": context.mailbox_email or missing.format("mailbox_email"),
        "primary_email": context.primary_email or missing.format("primary_email"),
        "tenant_id": tenant,
        "client_id": client,
        "credential_id": missing.format("credential_id")
        if context.credential_id is None
        else str(context.credential_id),
        "consent_url": admin_consent_url(
            tenant_id=tenant, client_id=client, login_url=context.login_url, cloud=context.cloud
        ),
        "spf_include": SPF_INCLUDES.get(context.cloud, SPF_INCLUDES[DEFAULT_CLOUD]),
        "dkim_target": DKIM_TARGETS.get(context.cloud, DKIM_TARGETS[DEFAULT_CLOUD]),
    }


_PERMISSIONS = (
    "In the Entra admin center (App registrations > the app > API permissions), add the Microsoft Graph "
    "*Application* permissions User.Read.All and Mail.Send (recommended: MailboxSettings.Read), then grant "
    "admin consent at {consent_url} . Then run `m365connect credentials rotate {credential_id}` (the same "
    "secret will do) so the service fetches a token with the new permissions, and connect the mailboxes "
    "again."
)
_ACCESS_POLICY = (
    "Exchange refused to let the app send as this mailbox: the app has no Microsoft Graph Mail.Send "
    "permission for the whole tenant, and no Exchange RBAC for Applications role assignment covers this "
    "mailbox (or an application access policy excludes it). Check in Exchange Online PowerShell: "
    "`Test-ServicePrincipalAuthorization -Identity {client_id} -Resource {mailbox_email}` (InScope must be "
    "True) and `Get-ManagementRoleAssignment -RoleAssignee {client_id}`; to fix, put the mailbox in the "
    "management scope (or group) of the app's assignment, or assign it: `New-ManagementRoleAssignment -App "
    '{client_id} -Role "Application Mail.Send" -CustomResourceScope <management scope>`. For an older '
    "application access policy: `Test-ApplicationAccessPolicy -Identity {mailbox_email} -AppId {client_id}` "
    "and `Get-ApplicationAccessPolicy`. Exchange applies changes to app permissions after 30 minutes to 2 "
    "hours; then connect the mailbox again."
)
_ENTRIES = (
    # ------------------------------------------------------------- a mailbox's health.error only
    Explanation(
        ErrorCode.CREDENTIAL_EXPIRED,
        Where.HEALTH,
        "The mailbox's credential has expired (its secret or certificate passed its expiry date, or "
        "Microsoft says it expired), so nothing can be sent from the mailbox. It stays connected.",
        "Create a new client secret (or certificate) for app {client_id} in Microsoft Entra and rotate the "
        "credential: `m365connect credentials rotate {credential_id}`. The mailbox returns to OK at its "
        "next check, or at once with POST /rest/v2/mailboxes/microsoft/{{id}}/verify.",
    ),
    Explanation(
        ErrorCode.CREDENTIAL_INVALID,
        Where.HEALTH,
        "Microsoft no longer issues a token for the mailbox's credential (secret deleted or wrong, app "
        "disabled or deleted in the tenant, certificate removed), so nothing can be sent from the "
        "mailbox. It stays connected.",
        "Check app {client_id} in tenant {tenant_id} (Microsoft Entra > Enterprise applications: enabled; "
        "App registrations > Certificates & secrets), rotate the secret if needed (`m365connect "
        "credentials rotate {credential_id}`), then POST "
        "/rest/v2/mailboxes/microsoft/credentials/{credential_id}/verify; the mailbox returns to OK at its "
        "next check.",
    ),
    # ------------------------------------------------------------------ per-item errors of POST /bulk
    Explanation(
        ErrorCode.INVALID_EMAIL,
        Where.ITEM,
        "This is not a valid email address.",
        "Correct the address (no spaces, one @, a domain) and submit it again.",
    ),
    Explanation(
        ErrorCode.DUPLICATE_EMAIL,
        Where.ITEM,
        "The same address (ignoring case) appears earlier in the request; only the first one is processed.",
        "Nothing to do: see the result of the first occurrence.",
    ),
    Explanation(
        ErrorCode.MAILBOX_NOT_FOUND,
        Where.ITEM,
        "No user in the credential's tenant has this address.",
        "Check the spelling, and that the mailbox belongs to the tenant of the credential used "
        "(another tenant needs its own credential).",
    ),
    Explanation(
        ErrorCode.WRONG_ALIAS,
        Where.ITEM,
        "This address is a secondary address (alias) of a mailbox.",
        "Submit the mailbox's primary address instead: {primary_email}.",
    ),
    Explanation(
        ErrorCode.MAILBOX_DISABLED,
        Where.ITEM,
        "The user's account is disabled (sign-in blocked) in Microsoft Entra, and Exchange does not "
        "report its mailbox as shared.",
        "Enable the account (Microsoft 365 admin center > Users > Unblock sign-in) and connect it again. "
        "If it is a shared mailbox: grant the app MailboxSettings.Read (with admin consent), without which "
        "a shared mailbox cannot be told from a disabled user, and connect it again.",
    ),
    Explanation(
        ErrorCode.UNSUPPORTED_MAILBOX_TYPE,
        Where.ITEM,
        "Exchange reports a room, equipment, linked or other mailbox: only user and shared mailboxes "
        "can be connected.",
        "Connect a user or shared mailbox instead; to send from this address, convert the mailbox in "
        "Exchange (Set-Mailbox -Identity <address> -Type Shared) and connect it again.",
    ),
    Explanation(
        ErrorCode.NO_EXCHANGE_MAILBOX,
        Where.ITEM,
        "The user has no Exchange Online mailbox (no licence with Exchange, hosted on-premises, "
        "soft-deleted, or a guest).",
        "Assign a licence that includes Exchange Online (or migrate the mailbox to Exchange Online), "
        "wait until the mailbox exists, then connect it again.",
    ),
    Explanation(
        ErrorCode.MISSING_PERMISSIONS,
        Where.ITEM,
        "The app registration lacks a required Microsoft Graph permission (User.Read.All or Mail.Send), "
        "or admin consent was not granted.",
        _PERMISSIONS,
    ),
    Explanation(
        ErrorCode.MAILBOX_ACCESS_DENIED,
        Where.ITEM,
        "Exchange Online does not let this app send as this mailbox (outside its RBAC for Applications "
        "scope, or excluded by an application access policy).",
        _ACCESS_POLICY,
    ),
    Explanation(
        ErrorCode.MAILBOX_ALREADY_CONNECTED,
        Where.ITEM,
        "This account already has this mailbox connected through another credential.",
        "Use the existing connection, or disconnect it (DELETE /rest/v2/mailboxes/microsoft/{{id}}) first.",
    ),
    Explanation(
        ErrorCode.MICROSOFT_THROTTLED,
        Where.ITEM,
        "Microsoft kept throttling the requests for this mailbox (HTTP 429) beyond the retry budget, or the "
        "app's Graph budget had no room for them before the request's deadline.",
        "Retry later; `m365connect connect` retries these rows by itself. Re-adding is safe.",
        retryable=True,
    ),
    Explanation(
        ErrorCode.MICROSOFT_UNAVAILABLE,
        Where.ITEM,
        "Microsoft did not answer, or answered with a server error, beyond the retry budget.",
        "Retry later; `m365connect connect` retries these rows by itself. Re-adding is safe.",
        retryable=True,
    ),
    Explanation(
        ErrorCode.JOB_ITEM_NOT_PROCESSED,
        Where.ITEM,
        "Bulk jobs only: the service itself could not run this item's chunk (its runs failed through the "
        "whole retry schedule, M365CONNECT_BULK_JOB_SWEEP_LIMIT times; for example the database was "
        "unreachable for hours). The mailbox was not connected; the job finished so that every item has a "
        "result.",
        "Resubmit the item (a new job or a synchronous request); the service's log has `bulk_job.swept` "
        "and `work.job.gave_up` with the cause.",
        retryable=True,
    ),
    # ------------------------------------------------------------------ 422 codes
    Explanation(
        ErrorCode.INVALID_TENANT_ID,
        Where.CODE_422,
        "The tenant id is malformed, reserved (common, organizations, consumers) or unknown to Microsoft.",
        "Use the Directory (tenant) ID from the app registration's Overview page, or a verified domain "
        "such as contoso.onmicrosoft.com.",
    ),
    Explanation(
        ErrorCode.INVALID_CLIENT_ID,
        Where.CODE_422,
        "The client id is not a GUID, or no enabled app with this id exists in the tenant.",
        "Use the Application (client) ID from the app registration's Overview page, and check that the "
        "app (its enterprise application) is enabled in this tenant.",
    ),
    Explanation(
        ErrorCode.INVALID_CLIENT_SECRET,
        Where.CODE_422,
        "Microsoft rejected the client secret (empty, wrong, or the secret's ID instead of its value).",
        "Create a new client secret (Certificates & secrets) and copy its Value, which is shown only once.",
    ),
    Explanation(
        ErrorCode.CLIENT_SECRET_EXPIRED,
        Where.CODE_422,
        "The client secret or certificate has expired (or the expiry date given is in the past).",
        "Create a new client secret (or certificate) in the app registration and save it with its expiry "
        "date.",
    ),
    Explanation(
        ErrorCode.CREDENTIAL_ALREADY_EXISTS,
        Where.CODE_422,
        "This account already has a credential for the same tenant and app.",
        "Rotate the existing credential's secret (`m365connect credentials rotate ID`) instead of adding it.",
    ),
    Explanation(
        ErrorCode.INVALID_CERTIFICATE,
        Where.CODE_422,
        "The certificate could not be used: unreadable, without its private key, a key that does not "
        "belong to the certificate, or not an RSA key of at least 2048 bits.",
        "Send one PEM text with the certificate and its unencrypted RSA private key (or a base64 PKCS#12 "
        "file with `certificate_password`); RSA keys need 2048 bits or more.",
    ),
    Explanation(
        ErrorCode.CERTIFICATE_NOT_REGISTERED,
        Where.CODE_422,
        "Microsoft does not know this certificate for the app (its thumbprint is not among the app "
        "registration's certificates).",
        "Upload the certificate (public part only) under Certificates & secrets of app {client_id} in "
        "Microsoft Entra, then try again.",
    ),
    Explanation(
        ErrorCode.CREDENTIAL_REJECTED,
        Where.CODE_422,
        "Microsoft refused the credential for another reason (for example a Conditional Access policy "
        "for workload identities).",
        "Look at the app's service principal sign-in logs in Microsoft Entra for the reason.",
    ),
    Explanation(
        ErrorCode.MICROSOFT_GRAPH_CREDENTIAL_IN_USE,
        Where.CODE_422,
        "Connected mailboxes still use this credential.",
        "Disconnect its mailboxes first (DELETE /rest/v2/mailboxes/microsoft/{{id}}), then delete it.",
    ),
    Explanation(
        ErrorCode.UNSUPPORTED_AUTH_TYPE,
        Where.CODE_422,
        "Only the auth_type APP_ONLY is supported.",
        'Send "auth_type": "APP_ONLY" or leave the field out.',
    ),
    Explanation(
        ErrorCode.EMPTY_ACCOUNTS,
        Where.CODE_422,
        "The request lists no mailbox.",
        "Send at least one item in accounts.",
    ),
    Explanation(
        ErrorCode.TOO_MANY_ACCOUNTS,
        Where.CODE_422,
        "The request lists more mailboxes than the service accepts at once "
        "(M365CONNECT_MAX_ACCOUNTS_PER_REQUEST, default 1000).",
        "Split the list into smaller requests (`m365connect connect --batch-size N`).",
    ),
    Explanation(
        ErrorCode.INVALID_CREDENTIAL_ID,
        Where.CODE_422,
        "The credential does not exist for this account, has expired, Microsoft no longer accepts it, "
        "or it was deleted during the request.",
        "Check `m365connect credentials list`; rotate an EXPIRED or INVALID credential's secret, then retry.",
    ),
    Explanation(
        ErrorCode.CREDENTIAL_UNREADABLE,
        Where.CODE_422,
        "The service cannot decrypt this credential's stored client secret with its encryption keys (a key "
        "was removed from M365CONNECT_ENCRYPTION_KEYS, the key file was replaced, or the database row was "
        "altered); nothing was sent to Microsoft.",
        "Send the secret again (`m365connect credentials rotate {credential_id}`; the same secret will "
        "do), or ask the service's operator to restore the missing key: the service's log names the "
        "credential (`credential.secret.unreadable`) and /readyz reports it.",
    ),
    Explanation(
        ErrorCode.CREDENTIAL_ID_REQUIRED,
        Where.CODE_422,
        "The account has several valid credentials, so the request must say which one to use.",
        "Send credential_id (`m365connect connect --credential-id ID`; ids from `credentials list`).",
    ),
    Explanation(
        ErrorCode.NO_VALID_CREDENTIAL,
        Where.CODE_422,
        "The account has no valid credential.",
        "Add one (`m365connect credentials add`) or rotate an expired one's secret.",
    ),
    Explanation(
        ErrorCode.INVALID_WEBHOOK_URL,
        Where.CODE_422,
        "The webhook URL cannot be used: not an absolute https URL on port 443, with a user name or "
        "password in it, a host that does not resolve, or a host that resolves (any of its addresses) to a "
        "loopback, private, link-local, CGNAT, multicast, reserved or cloud metadata address.",
        "Give a public https URL such as https://hooks.example.com/m365connect (port 443, no user:password@, "
        "a name in public DNS). A receiver on the same host or network needs the operator to set "
        "M365CONNECT_WEBHOOK_ALLOW_PRIVATE_NETWORKS=true (which also allows plain http).",
    ),
    Explanation(
        ErrorCode.UNKNOWN_EVENT_TYPE,
        Where.CODE_422,
        "`event_types` names a type that does not exist (or `webhook.test`, which only the test route "
        "sends).",
        "Use the types listed in docs/api.md (credential.created, mailbox.failing, ...), or leave "
        "`event_types` out (or null) to receive every type.",
    ),
    Explanation(
        ErrorCode.TOO_MANY_WEBHOOKS,
        Where.CODE_422,
        "The account already has the maximum number of webhook subscriptions (20).",
        "Delete a subscription you no longer need (`m365connect webhooks remove ID`), or send several "
        "event types to one URL (`event_types` takes a list).",
    ),
    Explanation(
        ErrorCode.IDEMPOTENCY_KEY_REUSED,
        Where.CODE_422,
        "This Idempotency-Key started a job within the last 24 hours with another request body.",
        "Send the same body to read that job again, or use a new key for a different import.",
    ),
    Explanation(
        ErrorCode.JOB_ALREADY_FINISHED,
        Where.CODE_422,
        "The bulk job is DONE or CANCELLED already, so there is nothing to cancel.",
        "Read its results (GET /rest/v2/mailboxes/microsoft/bulk/jobs/ID/results); start a new job for "
        "the items left.",
    ),
    # ------------------------------------------------------------------ deliverability reasons
    Explanation(
        "SPF no_microsoft_include",
        Where.REASON,
        "The domain's SPF record does not authorise Microsoft 365 of the credential's cloud: its include "
        "is not reached with a pass qualifier (a national cloud has its own include).",
        "Add `include:{spf_include}` before the `all` of the domain's SPF record, for example "
        "`v=spf1 include:{spf_include} -all`.",
    ),
    Explanation(
        "DKIM cname_not_microsoft",
        Where.REASON,
        "A selector1/selector2 DKIM CNAME does not point to Microsoft's target for this domain in the "
        "credential's cloud (copied from another domain, or another cloud's form).",
        "Point selectorN._domainkey.<domain> at selectorN-<domain with dashes>._domainkey under "
        "{dkim_target}; `Get-DkimSigningConfig -Identity <domain> | Format-List Selector1CNAME, "
        "Selector2CNAME` in Exchange Online PowerShell shows the exact values.",
    ),
    # ------------------------------------------------------------------ HTTP statuses
    Explanation(
        "400",
        Where.STATUS,
        "The request body is malformed (not JSON, a field missing or of the wrong type).",
        "Correct the field the detail names (the bulk endpoint answers with an empty body).",
    ),
    Explanation(
        "401",
        Where.STATUS,
        "The API key is missing, unknown or revoked.",
        "Send a valid key in x-api-key (`m365connect api-keys create --account NAME` on the server; "
        "the client reads --api-key or M365CONNECT_API_KEY).",
    ),
    Explanation(
        "404",
        Where.STATUS,
        "No such path, or no object with this id in this account.",
        "Check the URL and the id (ids of another account are not visible).",
    ),
    Explanation(
        "405",
        Where.STATUS,
        "The path exists but not with this HTTP method.",
        "Use a method docs/api.md lists for the path.",
    ),
    Explanation(
        "408",
        Where.STATUS,
        "The request's headers or body did not arrive in time (M365CONNECT_REQUEST_HEADER_TIMEOUT, "
        "M365CONNECT_REQUEST_BODY_TIMEOUT); the connection was closed and nothing was done.",
        "Send the request again, whole; check the network between the client and the service.",
        retryable=True,
    ),
    Explanation(
        "413",
        Where.STATUS,
        "The request body is larger than the service accepts (M365CONNECT_MAX_BODY_BYTES, default 2 MiB).",
        "Send fewer mailboxes per request (`m365connect connect --batch-size N`).",
    ),
    Explanation(
        "431",
        Where.STATUS,
        "The request's headers are larger than the service accepts (M365CONNECT_MAX_HEADER_BYTES, 16 KiB).",
        "Send fewer or shorter headers; an API key needs only `x-api-key`.",
    ),
    Explanation(
        "429",
        Where.STATUS,
        "Too many requests with this API key.",
        "Wait for the Retry-After seconds, then retry (the `m365connect` client commands wait and retry "
        "by themselves a few times before they report it).",
        retryable=True,
    ),
    Explanation(
        "500",
        Where.STATUS,
        "An unexpected error in the service (a bug); nothing was changed by the failed step.",
        "Retry; if it persists, report it with the response's X-Request-Id.",
    ),
    Explanation(
        "503",
        Where.STATUS,
        "Microsoft's identity platform (or the service's database) did not answer; nothing was saved.",
        "Wait for the Retry-After seconds, then retry (the `m365connect` client commands wait and retry "
        "by themselves a few times before they report it).",
        retryable=True,
    ),
)

EXPLANATIONS: Mapping[ErrorCode | str, Explanation] = MappingProxyType(
    {entry.code: entry for entry in _ENTRIES}
)
RETRYABLE_ITEM_CODES = frozenset(e.code for e in _ENTRIES if e.retryable and e.where is Where.ITEM)


def explain(code: str, context: Context | None = None) -> str:
    """Meaning and fix of a code (or a status such as "401"), one line; unknown codes say so."""
    entry = EXPLANATIONS.get(code)
    if entry is None:
        return f"Unknown code {code}: see docs/api.md."
    return entry.text(context)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown() -> str:
    """docs/errors.md: every code with its meaning and fix, grouped by where it appears."""
    lines = [
        "# Errors: what they mean and how to fix them",
        "",
        "Generated from `src/m365connect/explanations.py` (the command-line client shows the same text); "
        "regenerate with `python -m m365connect.explanations > docs/errors.md`. The client fills in "
        "the {placeholders} it knows (the consent URL of a `global` credential starts with "
        "`M365CONNECT_LOGIN_URL`; that of a national-cloud credential with its cloud's login host: "
        "`https://login.microsoftonline.us` for `usgov` and `usgov-dod`, "
        "`https://login.partner.microsoftonline.cn` for `china`). The SPF include named is the "
        "credential's cloud's: `spf.protection.outlook.com` for `global` (shown below), "
        "`spf.protection.office365.us` for `usgov` and `usgov-dod`, `spf.protection.partner.outlook.cn` "
        "for `china`; the DKIM targets are under `<tenant>.onmicrosoft.us` and "
        "`<tenant>.partner.onmschina.cn` there (docs/deliverability.md).",
    ]
    for where in Where:
        lines += ["", f"## {where.value}", "", "| code | meaning | fix |", "|---|---|---|"]
        for entry in _ENTRIES:
            if entry.where is where:
                fix = entry.render_fix(missing="{{{}}}")
                lines.append(f"| `{entry.code}` | {_cell(entry.meaning)} | {_cell(fix)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_markdown())
