"""Rich renderings of the client's answers: results, failure summaries with fixes, credentials."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console, Group
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from m365connect.client.csv_io import item_context
from m365connect.client.http import ItemResult
from m365connect.codes import ErrorCode
from m365connect.explanations import DEFAULT_CLOUD, EXPLANATIONS, Context, explain

MAX_FIXES_PER_CODE = 5


def _flag(value: bool | None) -> Text:
    if value is None:
        return Text("")
    return Text("yes", style="green") if value else Text("no", style="red")


def meaning(item: ItemResult) -> str:
    """A short note for one result (the fix is printed once per code, below the table)."""
    if item.error is None:
        return "already connected" if item.already_connected else ""
    entry = EXPLANATIONS.get(item.error)
    text = entry.meaning if entry is not None else explain(item.error)
    if item.error == ErrorCode.WRONG_ALIAS and item.primary_email:
        text += f" Submit {item.primary_email} instead."
    return text


def results_table(
    results: Sequence[ItemResult], *, title: str | None = None, explanations: bool = True
) -> Table:
    """One row per mailbox: result, SPF, DKIM, DMARC, mailbox type, and (unless left out) what a failure
    means."""
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("mailbox", overflow="fold")  # a long address wraps; a code or a flag never does
    table.add_column("result", no_wrap=True)
    table.add_column("SPF", justify="center", no_wrap=True)
    table.add_column("DKIM", justify="center", no_wrap=True)
    table.add_column("DMARC", justify="center", no_wrap=True)
    table.add_column("type", no_wrap=True)
    if explanations:
        table.add_column("explanation", min_width=30)
    for item in results:
        result = Text("connected", style="green") if item.success else Text(str(item.error), style="red")
        cells: list[str | Text] = [
            item.email,
            result,
            _flag(item.spf_correct),
            _flag(item.dkim_correct),
            _flag(item.dmarc_correct),
            item.mailbox_type or "",
        ]
        table.add_row(*cells, *([meaning(item)] if explanations else []))
    return table


def print_results(console: Console, results: Sequence[ItemResult], *, cloud: str = DEFAULT_CLOUD) -> None:
    """The results table, then why each domain's "no" is a no (the fixes name what `cloud`, the
    credential's, publishes); on a terminal too narrow for the explanation column (80 columns with long
    addresses), the table without it and each failure's meaning below, wrapped, so nothing is cut off."""
    table = results_table(results)
    # Measured unbounded: a measurement within the console's width is clamped to it.
    needed = Measurement.get(console, console.options.update_width(10_000), table).minimum
    if not console.is_terminal or needed <= console.width:
        print_table(console, table)
    else:
        console.print(results_table(results, explanations=False))
        for item in results:
            if item.error is not None:
                console.print(Text.assemble((item.email, "bold"), f" {item.error}: ", meaning(item)))
    reasons = deliverability_reasons(results, cloud=cloud)
    if reasons:
        console.print(Text("Why SPF, DKIM or DMARC is not correct (docs/deliverability.md):", style="bold"))
        for line in reasons:
            console.print(line)


def deliverability_reasons(results: Sequence[ItemResult], *, cloud: str = DEFAULT_CLOUD) -> list[Text]:
    """One line per domain whose SPF, DKIM or DMARC is not correct, with the reasons the service gave:
    `dns_error` (the lookup failed; the record may be fine) is told apart from a wrong record. A reason
    with an explanation is followed by its fix for `cloud` (the right SPF include, the DKIM target)."""
    by_domain: dict[str, list[str]] = {}
    for item in results:
        checks = (("SPF", item.spf_reason), ("DKIM", item.dkim_reason), ("DMARC", item.dmarc_reason))
        problems = [f"{name} {reason}" for name, reason in checks if reason not in (None, "ok")]
        if problems:
            by_domain.setdefault(item.email.rpartition("@")[2].lower(), problems)
    context = Context(cloud=cloud)
    lines: list[Text] = []
    for domain, problems in by_domain.items():
        fixes = [f"{p}: {EXPLANATIONS[p].render_fix(context)}" for p in problems if p in EXPLANATIONS]
        lines.append(Text.assemble((domain, "bold"), ": ", ", ".join(problems), *(f"\n  {f}" for f in fixes)))
    return lines


def summary_table(results: Sequence[ItemResult]) -> Table:
    """Rows per outcome: connected, then each failure code."""
    counts: dict[str, int] = {}
    for item in results:
        key = "connected" if item.success else str(item.error)
        counts[key] = counts.get(key, 0) + 1
    table = Table("result", "rows", "meaning", title="Summary", title_justify="left")
    for key, count in sorted(counts.items(), key=lambda pair: (pair[0] != "connected", pair[0])):
        entry = EXPLANATIONS.get(key)
        style = "green" if key == "connected" else "red"
        table.add_row(Text(key, style=style), str(count), entry.meaning if entry else "")
    return table


def fixes(results: Sequence[ItemResult], base: Context) -> Group | None:
    """How to fix each failure code: once when the fix is the same for all its mailboxes (named when only
    one has that code), else per mailbox (at most MAX_FIXES_PER_CODE, then a count)."""
    by_code: dict[str, list[ItemResult]] = {}
    for item in results:
        if item.error is not None:
            by_code.setdefault(item.error, []).append(item)
    parts: list[Text] = []
    for code, items in by_code.items():
        entry = EXPLANATIONS.get(code)
        if entry is None:
            parts.append(Text.assemble((code, "bold red"), ": ", explain(code)))
            continue
        # A fix that names the mailbox or its primary address differs per mailbox: each gets its own
        # (the real address from its result, never a `<primary_email>` placeholder); otherwise once.
        per_item = {item.email: entry.render_fix(item_context(item, base)) for item in items}
        if len(set(per_item.values())) == 1:
            who = items[0].email if len(items) == 1 else f"{len(items)} mailboxes"
            parts.append(Text.assemble((code, "bold red"), f" ({who}): ", next(iter(per_item.values()))))
            continue
        shown = list(per_item.items())[:MAX_FIXES_PER_CODE]
        parts += [Text.assemble((code, "bold red"), f" ({email}): ", fix) for email, fix in shown]
        if len(per_item) > len(shown):
            more = len(per_item) - len(shown)
            parts.append(
                Text(f"{code}: {more} more mailboxes, see the explanation column of the results file")
            )
    if not parts:
        return None
    return Group(Text("How to fix:", style="bold"), *parts)


def credentials_table(credentials: Sequence[dict[str, Any]]) -> Table:
    """Credentials, never their secrets."""
    table = Table("id", "name", "tenant", "client", "expires", "status", "missing permissions")
    for credential in credentials:
        status = str(credential.get("status"))
        table.add_row(
            str(credential.get("credential_id")),
            str(credential.get("name")),
            str(credential.get("tenant_id")),
            str(credential.get("client_id")),
            str(credential.get("secret_expires_at")),
            Text(status, style="green" if status == "VALID" else "red"),
            ", ".join(credential.get("missing_permissions") or []) or "none",
        )
    return table


def natural_width(console: Console, table: Table) -> Table:
    """The table at its natural width: piped, rich assumes 80 columns and would cut cells short."""
    table.width = Measurement.get(console, console.options.update_width(10_000), table).maximum
    return table


def print_table(console: Console, table: Table) -> None:
    """Wrapped to a terminal's width; at its natural width (uncut) when the output is piped."""
    if console.is_terminal:
        console.print(table)
    else:
        console.print(natural_width(console, table), crop=False)
