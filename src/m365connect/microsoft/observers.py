"""Optional hooks through which the token and Graph clients report what they did (metrics, tracing).

The clients call these with plain values and never import the code that records them; the defaults do
nothing. The service wires implementations backed by its metrics registry (m365connect.observability).
"""

from __future__ import annotations

from typing import Literal, Protocol

TokenOutcome = Literal["granted", "rejected", "unavailable"]
WaitReason = Literal["throttled", "unavailable"]


class GraphObserver(Protocol):
    """Receives one call per Graph answer and per retry wait."""

    def answered(self, status: int) -> None:
        """One Graph request (a call, or an item of a `$batch`) got this HTTP status; 0: no usable answer."""

    def waited(self, seconds: float, reason: WaitReason) -> None:
        """The client waits `seconds` before re-sending: `throttled` when an item was answered 429."""


class TokenObserver(Protocol):
    """Receives one call per request sent to the identity platform."""

    def requested(self, outcome: TokenOutcome, seconds: float) -> None:
        """One token request ended: granted, rejected (by Microsoft) or unavailable (to be retried)."""


class NoGraphObserver:
    """The default: observes nothing."""

    def answered(self, status: int) -> None:
        """Nothing."""

    def waited(self, seconds: float, reason: WaitReason) -> None:
        """Nothing."""


class NoTokenObserver:
    """The default: observes nothing."""

    def requested(self, outcome: TokenOutcome, seconds: float) -> None:
        """Nothing."""
