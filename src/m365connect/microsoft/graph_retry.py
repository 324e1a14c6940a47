"""The Graph retry policy: which answers are retried, and how long to wait (reference §6.4)."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from enum import Enum

from m365connect.microsoft.graph_types import Reply, error_field

# Repeating these cannot do harm twice (RFC 9110 §9.2.2); a POST such as sendMail can.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# Graph sends this 401 for a token that is valid but carries no roles: refreshing will not help.
NOT_A_TOKEN_PROBLEM = "NoPermissionsInAccessToken"
# Graph's errors page: 503 "You may repeat the request after a delay" - so any method. 500/502/504 leave
# open whether Graph carried the request out, so only idempotent requests are repeated after them.
RETRYABLE_ANY_METHOD = frozenset({429, 503})
RETRYABLE_IF_IDEMPOTENT = frozenset({0, 500, 502, 504})


class Verdict(Enum):
    """What to do with one answer."""

    FINAL = "FINAL"
    RETRY = "RETRY"
    REAUTH = "REAUTH"  # refresh the token once, then re-send at once


def verdict(method: str, reply: Reply) -> Verdict:
    """Classify one answer to a request sent with `method`.

    Always retried: 429, 503 and requests that never reached Graph. Idempotent requests are also retried
    on 500/502/504 and on no usable answer (timeout, network error, malformed JSON); a non-idempotent
    one is not, because Graph may have carried it out (a second sendMail is a second email).
    400/403/404 and every other answer are final.
    """
    if reply.status == 401 and error_field(reply.body, "code") != NOT_A_TOKEN_PROBLEM:
        return Verdict.REAUTH
    if reply.unsent or reply.status in RETRYABLE_ANY_METHOD:
        return Verdict.RETRY
    if reply.status in RETRYABLE_IF_IDEMPOTENT and method.upper() in IDEMPOTENT_METHODS:
        return Verdict.RETRY
    return Verdict.FINAL


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a `Retry-After` header (lowercase keys); Graph sends fractions such as "2.128"."""
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        return None  # an HTTP-date: Graph does not send one; back off instead
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def backoff(attempt: int, cap: float) -> float:
    """Exponential backoff with jitter after failed attempt `attempt` (1-based): ~1, 2, 4, 8 s, capped."""
    return min(cap, 2.0 ** (attempt - 1)) * random.uniform(0.5, 1.0)
