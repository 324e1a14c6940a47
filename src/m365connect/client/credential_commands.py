"""`credentials add/list/rotate/delete`: Microsoft Graph credentials of a running service, with a
client secret or a certificate (PEM or PKCS#12), in any national cloud.

Thin: parse options, read the secret or certificate (credential_input.py), call ServiceClient, render.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from m365connect.client import report
from m365connect.client.credential_input import CredentialInput, credential_input
from m365connect.client.http import DEFAULT_URL, ServiceClient
from m365connect.client.options import ApiKey, LoginUrl, Url, reported
from m365connect.codes import ErrorCode
from m365connect.explanations import (
    CONSENT_LOGIN_URLS,
    DEFAULT_CLOUD,
    DEFAULT_LOGIN_URL,
    EXPLANATIONS,
    Context,
    explain,
)

credentials_app = typer.Typer(
    help="Add, list, rotate and delete Microsoft Graph credentials of a running service.",
    no_args_is_help=True,
)

Certificate = Annotated[
    Path | None,
    typer.Option(
        "--certificate",
        help="Certificate file instead of a secret: PEM with its unencrypted key, or .pfx/.p12",
        dir_okay=False,
    ),
]
CertificatePassword = Annotated[
    bool,
    typer.Option(
        "--certificate-password",
        help="The .pfx/.p12 has a password: asked hidden (or M365CONNECT_CERTIFICATE_PASSWORD)",
    ),
]
SecretExpiresAt = Annotated[
    str | None,
    typer.Option(
        "--secret-expires-at",
        help="The secret's expiry, e.g. 2027-11-28 (a certificate: default its notAfter)",
    ),
]


def _print_credential(console: Console, credential: dict[str, Any], verb: str, login_url: str) -> None:
    thumbprint = credential.get("certificate_thumbprint")
    kind = f"certificate {thumbprint}, " if thumbprint else ""
    console.print(
        f"credential {credential['credential_id']} {verb}: '{credential['name']}', {kind}"
        f"cloud {credential.get('cloud', DEFAULT_CLOUD)}, expires {credential['secret_expires_at']}, "
        f"status {credential['status']}, "
        f"permissions {', '.join(credential['granted_permissions']) or 'none'}",
        highlight=False,
        soft_wrap=True,
    )
    _print_missing(console, [credential], login_url)
    if "Mail.Send" in (credential.get("missing_permissions") or []):
        # An app scoped with Exchange RBAC for Applications has no Mail.Send in its token by design.
        context = _context(credential, login_url)
        console.print(
            "[yellow]If the app sends through Exchange RBAC for Applications[/yellow] (no tenant-wide "
            "Mail.Send, by design), the missing Mail.Send is expected: the mailboxes in its management "
            "scope connect, the others answer MAILBOX_ACCESS_DENIED. "
            + EXPLANATIONS[ErrorCode.MAILBOX_ACCESS_DENIED].render_fix(context),
            highlight=False,
            soft_wrap=True,
        )


def _context(credential: dict[str, Any], login_url: str) -> Context:
    return Context(
        tenant_id=credential["tenant_id"],
        client_id=credential["client_id"],
        credential_id=credential["credential_id"],
        login_url=login_url,
        cloud=credential.get("cloud", DEFAULT_CLOUD),
    )


def _print_missing(console: Console, credentials: list[dict[str, Any]], login_url: str) -> None:
    for credential in credentials:
        if credential.get("missing_permissions"):
            context = _context(credential, login_url)
            console.print(
                f"[yellow]credential {credential['credential_id']} lacks "
                f"{', '.join(credential['missing_permissions'])}:[/yellow] "
                + explain(ErrorCode.MISSING_PERMISSIONS, context),
                highlight=False,
                soft_wrap=True,
            )


@credentials_app.command("add")
def credentials_add(
    tenant_id: Annotated[str, typer.Option("--tenant-id", help="Directory (tenant) ID or verified domain")],
    client_id: Annotated[str, typer.Option("--client-id", help="Application (client) ID")],
    api_key: ApiKey,
    secret_expires_at: SecretExpiresAt = None,
    certificate: Certificate = None,
    certificate_password: CertificatePassword = False,
    cloud: Annotated[
        str,
        typer.Option("--cloud", help=f"National cloud of the app: {', '.join(CONSENT_LOGIN_URLS)}"),
    ] = DEFAULT_CLOUD,
    url: Url = DEFAULT_URL,
    name: Annotated[str | None, typer.Option("--name", help="A name for the credential")] = None,
    login_url: LoginUrl = DEFAULT_LOGIN_URL,
) -> None:
    """Verify an app registration with Microsoft and store it (secret: hidden prompt or
    M365CONNECT_CLIENT_SECRET; or --certificate FILE)."""
    out, err = Console(), Console(stderr=True)
    with reported(err):
        given = _given(certificate, certificate_password, secret_expires_at, "Client secret (its value)")
        with ServiceClient(url=url, api_key=api_key) as client:
            created = client.add_credential(
                tenant_id=tenant_id,
                client_id=client_id,
                secret_expires_at=secret_expires_at,
                name=name,
                cloud=cloud,
                **given.fields(),
            )
    _print_credential(out, created, "saved", login_url)


def _given(
    certificate: Path | None, password_asked: bool, secret_expires_at: str | None, prompt: str
) -> CredentialInput:
    return credential_input(
        certificate=certificate,
        password_asked=password_asked,
        secret_expires_at=secret_expires_at,
        secret_prompt=prompt,
    )


@credentials_app.command("list")
def credentials_list(
    api_key: ApiKey, url: Url = DEFAULT_URL, login_url: LoginUrl = DEFAULT_LOGIN_URL
) -> None:
    """List the account's credentials (never their secrets)."""
    out, err = Console(), Console(stderr=True)
    with reported(err), ServiceClient(url=url, api_key=api_key) as client:
        credentials = client.list_credentials()
    if not credentials:
        out.print("no credentials yet: add one with `m365connect credentials add`")
        return
    report.print_table(out, report.credentials_table(credentials))
    _print_missing(out, credentials, login_url)


@credentials_app.command("rotate")
def credentials_rotate(
    credential_id: Annotated[int, typer.Argument(help="The credential's id (see credentials list)")],
    api_key: ApiKey,
    secret_expires_at: SecretExpiresAt = None,
    certificate: Certificate = None,
    certificate_password: CertificatePassword = False,
    url: Url = DEFAULT_URL,
    login_url: LoginUrl = DEFAULT_LOGIN_URL,
) -> None:
    """Replace a credential's secret or certificate; the new one is verified first, the old one stays on
    failure."""
    out, err = Console(), Console(stderr=True)
    with reported(err):
        given = _given(certificate, certificate_password, secret_expires_at, "New client secret (its value)")
        with ServiceClient(url=url, api_key=api_key) as client:
            rotated = client.rotate_credential(
                credential_id, secret_expires_at=secret_expires_at, **given.fields()
            )
    _print_credential(out, rotated, "rotated", login_url)


@credentials_app.command("delete")
def credentials_delete(
    credential_id: Annotated[int, typer.Argument(help="The credential's id (see credentials list)")],
    api_key: ApiKey,
    url: Url = DEFAULT_URL,
) -> None:
    """Delete a credential that no connected mailbox uses."""
    with reported(Console(stderr=True)), ServiceClient(url=url, api_key=api_key) as client:
        client.delete_credential(credential_id)
    Console().print(f"credential {credential_id} deleted")
