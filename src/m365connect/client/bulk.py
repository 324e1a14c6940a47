"""Connect a list of mailboxes of any length: requests of at most `batch_size` items, transient
per-item failures submitted again with backoff, duplicates answered locally.

The service answers DUPLICATE_EMAIL only within one request; a file split into several requests is
deduplicated here the same way (the first occurrence is submitted), so the whole file behaves like one
request. Re-submitting a row is safe: re-adding a connected mailbox is idempotent on the service.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from m365connect.client.csv_io import InputRow
from m365connect.client.http import ItemResult, ServiceClient, Sleep
from m365connect.codes import ErrorCode
from m365connect.explanations import RETRYABLE_ITEM_CODES

MAX_BACKOFF_SECONDS = 60.0


@dataclass
class Progress:
    """Counts so far: rows answered for good, and re-submissions of transient failures."""

    total: int
    connected: int = 0
    failed: int = 0
    retried: int = 0

    @property
    def done(self) -> int:
        """Rows with a final result."""
        return self.connected + self.failed


OnProgress = Callable[[Progress], None]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently transient per-item failures are submitted again."""

    max_attempts: int = 4
    first_delay: float = 2.0
    sleep: Sleep = time.sleep

    def delay(self, attempt: int) -> float:
        """Seconds to wait after `attempt` (1-based) before the next one."""
        return min(self.first_delay * 2.0 ** (attempt - 1), MAX_BACKOFF_SECONDS)


def _duplicate(row: InputRow) -> ItemResult:
    return ItemResult(
        success=False,
        id=None,
        email=row.mailbox_email.strip(),
        name=row.display_name,
        error=ErrorCode.DUPLICATE_EMAIL,
        primary_email=None,
        spf_correct=None,
        dkim_correct=None,
        already_connected=False,
    )


def account_of(row: InputRow) -> dict[str, str]:
    """One row as a bulk request item."""
    account = {"mailbox_email": row.mailbox_email}
    if row.display_name is not None:
        account["display_name"] = row.display_name
    return account


def connect_rows(
    client: ServiceClient,
    rows: Sequence[InputRow],
    *,
    credential_id: int | None,
    batch_size: int,
    retry: RetryPolicy | None = None,
    progress: Progress | None = None,
    on_progress: OnProgress | None = None,
) -> list[ItemResult]:
    """One result per row, in row order."""
    retry = retry or RetryPolicy()
    progress = progress or Progress(total=len(rows))
    results: list[ItemResult | None] = [None] * len(rows)
    first_of: dict[str, int] = {}
    pending: list[int] = []
    for index, row in enumerate(rows):
        key = row.mailbox_email.strip().casefold()
        if key and key in first_of:
            results[index] = _duplicate(row)
            progress.failed += 1
        else:
            first_of.setdefault(key, index)
            pending.append(index)
    for attempt in range(1, retry.max_attempts + 1):
        again: list[int] = []
        for start in range(0, len(pending), batch_size):
            chunk = pending[start : start + batch_size]
            answers = client.bulk([account_of(rows[i]) for i in chunk], credential_id=credential_id)
            for index, answer in zip(chunk, answers, strict=True):
                if answer.error in RETRYABLE_ITEM_CODES and attempt < retry.max_attempts:
                    again.append(index)
                    continue
                results[index] = answer
                if answer.success:
                    progress.connected += 1
                else:
                    progress.failed += 1
            if on_progress is not None:
                on_progress(progress)
        if not again:
            break
        progress.retried += len(again)
        if on_progress is not None:
            on_progress(progress)
        retry.sleep(retry.delay(attempt))
        pending = again
    return [result for result in results if result is not None]
