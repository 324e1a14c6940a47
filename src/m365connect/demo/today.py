"""The demo's second part: a tenant set up the way Microsoft advises today, on an account of its own.

A certificate credential connects the shared mailboxes; an app whose Entra Mail.Send was removed and whose
Exchange RBAC for Applications scope covers a group connects that group's mailboxes and gets
MAILBOX_ACCESS_DENIED for the others; the requests per national cloud show the GCC High credential of
the first part talking to the usgov URLs; the simulator's mail log shows that no message was sent.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.rule import Rule

from m365connect.client import ItemResult, ServiceClient, report
from m365connect.demo.scenario import TodaysTenant
from m365connect.explanations import Context
from m365connect.simulator import FakeMicrosoft

TITLE = "Today's tenant: a certificate, RBAC for Applications, shared mailboxes, GCC High"


def show_todays_tenant(
    console: Console, client: ServiceClient, tenant: TodaysTenant, fake: FakeMicrosoft
) -> None:
    """Both credentials of the tenant, their bulks, then the requests per cloud and the mail log."""
    console.print()
    console.print(Rule(TITLE))
    certificate = client.add_credential(
        tenant_id=tenant.tenant_id,
        client_id=tenant.certificate_client_id,
        certificate=tenant.certificate_pem,
        name=tenant.certificate_name,
    )
    results = client.bulk(
        [{"mailbox_email": a} for a in tenant.certificate_addresses],
        credential_id=int(certificate["credential_id"]),
    )
    _print(console, certificate, results, f"certificate {certificate['certificate_thumbprint']}", tenant)

    scoped = client.add_credential(
        tenant_id=tenant.tenant_id,
        client_id=tenant.scoped_client_id,
        client_secret=tenant.scoped_secret,
        secret_expires_at="2099-12-31",
        name=tenant.scoped_name,
    )
    results = client.bulk(
        [{"mailbox_email": a} for a in [*tenant.in_scope, *tenant.out_of_scope]],
        credential_id=int(scoped["credential_id"]),
    )
    roles = ", ".join(scoped["granted_permissions"]) or "none"
    how = (
        f"token roles {roles}, no Mail.Send: Exchange RBAC for Applications scope on the group "
        f"'{tenant.scope}' (each mailbox probed, no message sent)"
    )
    _print(console, scoped, results, how, tenant)

    console.print()
    console.print("Requests per cloud, as the simulator counted them:", style="bold")
    for cloud, counts in sorted(fake.stats.by_cloud.items()):
        tokens, graph = counts["token_requests"], counts["graph_requests"]
        console.print(f"  {cloud}: {tokens} token requests, {graph} Graph requests", highlight=False)
    console.print(
        f"Messages sent, per the simulator's mail log: {len(fake.sent_mail)} (no verification sends one)",
        style="bold",
        highlight=False,
    )


def _print(
    console: Console, credential: dict[str, Any], results: list[ItemResult], how: str, tenant: TodaysTenant
) -> None:
    connected = sum(item.success for item in results)
    console.print()
    console.print(
        f"Credential {credential['credential_id']} '{credential['name']}' ({how}): "
        f"{connected} of {len(results)} connected",
        style="bold",
        highlight=False,
        soft_wrap=True,
    )
    report.print_results(console, results)
    context = Context(tenant_id=tenant.tenant_id, client_id=str(credential["client_id"]))
    fixes = report.fixes(results, context)
    if fixes is not None:
        console.print(fixes, soft_wrap=True, highlight=False)
