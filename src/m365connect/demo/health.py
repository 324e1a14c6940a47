"""The demo's third part (issue 11): a mailbox that breaks in the tenant reaches a webhook, then recovers.

A local receiver is subscribed to `mailbox.failing` and `mailbox.recovered`; the simulator's admin disables
a user; an operator's "verify now" (the on-demand check, the same one the background checks run on their
schedule) finds it; the event goes the usual way (outbox dispatch and delivery on the work engine) to the
receiver, whose copy is verified with the subscription's secret by the Standard Webhooks library. Then
the user is enabled again and `mailbox.recovered` follows the same path.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.rule import Rule
from standardwebhooks import Webhook, WebhookVerificationError

from m365connect.client import ServiceClient
from m365connect.demo.receiver import Receiver
from m365connect.simulator import FakeMicrosoft

TITLE = "A mailbox fails and recovers; a webhook hears both"
EVENT_TYPES = ["mailbox.failing", "mailbox.recovered"]
# The delivery normally arrives within a second or two (outbox pass + delivery job on the engine).
ARRIVAL_SECONDS = 30.0
DEMO_SETTING = (
    "Demo setting: M365CONNECT_WEBHOOK_ALLOW_PRIVATE_NETWORKS=true, so the service may POST to this "
    "receiver on 127.0.0.1 over plain http. Leave it off in production: webhooks then go to public https "
    "URLs only."
)


def show_failing_and_recovered(
    console: Console,
    client: ServiceClient,
    *,
    fake: FakeMicrosoft,
    receiver: Receiver,
    tenant_id: str,
    mailbox: tuple[int, str],
) -> None:
    """Subscribe the receiver, disable then re-enable the mailbox's user, show each event arrive."""
    mailbox_id, email = mailbox
    console.print()
    console.print(Rule(TITLE))
    console.print(DEMO_SETTING, soft_wrap=True, highlight=False)
    created = client.add_webhook(url=receiver.url, event_types=EVENT_TYPES, description="the demo's receiver")
    verifier = Webhook(created["secret"])  # kept in memory to verify deliveries, never printed
    console.print(
        f"Webhook {created['id']} subscribed: {created['url']} ({', '.join(EVENT_TYPES)}); its signing "
        "secret was shown once, in the answer that created it.",
        soft_wrap=True,
        highlight=False,
    )
    for step, enabled, expected in ((1, False, "mailbox.failing"), (2, True, "mailbox.recovered")):
        fake.change_user(tenant_id, email, account_enabled=enabled)
        action = "enables the user again" if enabled else "disables the user (sign-in blocked)"
        console.print(f"\nThe tenant's admin {action}: {email}", style="bold", highlight=False)
        fresh = client.verify_mailbox(mailbox_id)
        health = fresh["health"]
        console.print(
            f"POST /rest/v2/mailboxes/microsoft/{mailbox_id}/verify (verify now; background checks do the "
            f"same on their schedule): health {health['state']}"
            f"{', ' + health['error'] if health.get('error') else ''}, status {fresh['status']}",
            soft_wrap=True,
            highlight=False,
        )
        if not receiver.wait_for(step, seconds=ARRIVAL_SECONDS):
            console.print(f"The receiver got no {expected} within {ARRIVAL_SECONDS:.0f} s.", highlight=False)
            return
        arrived = receiver.deliveries[step - 1]
        _show_delivery(console, verifier, arrived.headers, arrived.body)


def _show_delivery(console: Console, verifier: Webhook, headers: dict[str, str], body: bytes) -> None:
    try:
        event: dict[str, Any] = verifier.verify(body, headers)
    except WebhookVerificationError as exc:
        console.print(f"The receiver got a delivery whose signature does not verify: {exc}", highlight=False)
        return
    data = event["data"]
    health = data.get("health") or {}
    console.print(
        f"The receiver got {event['type']} for mailbox {data['id']} {data['email']} "
        f"(health {health.get('state')}{', ' + health['error'] if health.get('error') else ''}); "
        f"webhook-id {headers.get('webhook-id')}, signature verified (Standard Webhooks)",
        soft_wrap=True,
        highlight=False,
    )
