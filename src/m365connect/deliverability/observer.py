"""An optional hook through which the checker reports its DNS lookups (metrics); the default does nothing."""

from __future__ import annotations

from typing import Literal, Protocol

LookupOutcome = Literal["answer", "nodata", "nxdomain", "error"]


class DnsObserver(Protocol):
    """Receives one call per DNS lookup the checker makes (lookups shared by several checks count once)."""

    def looked_up(self, rdtype: str, outcome: LookupOutcome, seconds: float) -> None:
        """A lookup of this record type (`TXT`, `CNAME`, `MX`, …) ended with this outcome after `seconds`."""


class NoDnsObserver:
    """The default: observes nothing."""

    def looked_up(self, rdtype: str, outcome: LookupOutcome, seconds: float) -> None:
        """Nothing."""
