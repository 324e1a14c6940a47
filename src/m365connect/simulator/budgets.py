"""Microsoft Graph's published budgets as simulator knobs: off by default, changeable while it runs.

Numbers and sources (docs/graph-client.md, "Published budgets"): identity and access resource units per app
and tenant per 10 s by tenant size (S < 50 users 3,500; M 50-500 5,000; L > 500 8,000), a token bucket
(Microsoft: "Throttling is based on a token bucket algorithm"); Outlook 10,000 requests per 10 minutes per
app and mailbox and 4 concurrent requests "per app ID ... regardless of whether the requests all access the
same mailbox" (the stricter reading, the default here); the token endpoint's "429 Too Many Requests, with a
Retry-After: 60" for a client that over-calls client_credentials (Microsoft publishes no count: a knob).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Positive = Annotated[int, Field(ge=1)]
Seconds = Annotated[float, Field(gt=0.0)]
TenantSize = Literal["S", "M", "L"]
SMALL_BELOW_USERS = 50  # S: "under 50 users"
LARGE_ABOVE_USERS = 500  # L: "above 500 users"


class Budgets(BaseModel):
    """Which of Graph's budgets the simulator enforces, and their sizes; `enabled` false changes nothing."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    enabled: bool = False
    directory_units_small: Positive = 3_500
    directory_units_medium: Positive = 5_000
    directory_units_large: Positive = 8_000
    directory_window_seconds: Seconds = 10.0
    outlook_requests: Positive = 10_000
    outlook_window_seconds: Seconds = 600.0
    outlook_concurrency: Positive = 4
    # "app": 4 in flight per app id across all its mailboxes (Microsoft's current wording, the stricter);
    # "mailbox": 4 per app id and mailbox (the older wording).
    outlook_concurrency_scope: Literal["app", "mailbox"] = "app"
    outlook_concurrency_retry_after: Positive = 1
    batch_outlook_parallelism: Positive = 4
    token_requests: Positive = 100
    token_window_seconds: Seconds = 60.0
    token_retry_after: Positive = 60

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply a partial update atomically: all keys are validated together before any is set."""
        validated = Budgets.model_validate({**self.model_dump(), **changes})
        for name in changes:
            setattr(self, name, getattr(validated, name))

    def directory_units(self, size: TenantSize) -> int:
        """The resource units per window of an app in a tenant of this size."""
        return {
            "S": self.directory_units_small,
            "M": self.directory_units_medium,
            "L": self.directory_units_large,
        }[size]


def tenant_size(users: int) -> TenantSize:
    """Microsoft's tenant size: S under 50 users, M between 50 and 500, L above 500."""
    if users < SMALL_BELOW_USERS:
        return "S"
    return "M" if users <= LARGE_ABOVE_USERS else "L"
