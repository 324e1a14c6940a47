"""Fault-injection knobs and request counters of the simulator, both mutable while it runs."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

Rate = Annotated[float, Field(ge=0.0, le=1.0)]


class Faults(BaseModel):
    """Injected latency and failures; every knob defaults to off and may be changed at runtime."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    latency_ms: Annotated[float, Field(ge=0.0)] = 0.0
    token_throttle_rate: Rate = 0.0
    token_unavailable_rate: Rate = 0.0
    graph_throttle_rate: Rate = 0.0
    graph_retry_after: Annotated[float, Field(gt=0.0)] = 2.128
    graph_unavailable_rate: Rate = 0.0
    graph_malformed_rate: Rate = 0.0
    graph_reset_rate: Rate = 0.0
    seed: int = 0

    _rng: random.Random = PrivateAttr(default_factory=random.Random)

    def model_post_init(self, _context: Any, /) -> None:
        """Seed the private random generator from the seed knob."""
        self._rng.seed(self.seed)

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "seed":  # setting the seed (even to the same value) restarts the sequence
            self._rng.seed(self.seed)

    def __eq__(self, other: object) -> bool:
        """Equal when every knob is equal (the generator's position is not compared)."""
        if not isinstance(other, Faults):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]  # mutable, like every pydantic model

    @property
    def rng(self) -> random.Random:
        """The seeded generator behind every fault decision and the $batch shuffle."""
        return self._rng

    def roll(self, rate: float) -> bool:
        """Decide one fault of the given rate; a rate of 0 draws nothing from the generator."""
        return rate > 0.0 and self._rng.random() < rate

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply a partial update atomically: all keys are validated together before any is set."""
        validated = Faults.model_validate({**self.model_dump(), **changes})
        for name in changes:
            setattr(self, name, getattr(validated, name))

    def retry_after_header(self) -> str:
        """Return graph_retry_after as Graph writes it: '2.128', '0.2', '3' (no trailing '.0')."""
        text = repr(self.graph_retry_after)
        return text.removesuffix(".0")


@dataclass
class Stats:
    """Live request counters; dns_queries is read from the DNS server through dns_source."""

    token_requests: int = 0
    graph_requests: int = 0
    batch_requests: int = 0
    batch_items: int = 0
    throttled: int = 0
    # Token and Graph requests per national cloud (the path prefix they came to): which cloud was used
    by_cloud: dict[str, dict[str, int]] = field(default_factory=dict)
    dns_source: Callable[[], int] = field(default=lambda: 0, repr=False)
    _dns_base: int = field(default=0, repr=False)

    @property
    def dns_queries(self) -> int:
        """DNS queries served since the last reset."""
        return self.dns_source() - self._dns_base

    def reset(self) -> None:
        """Set every counter back to zero."""
        self.token_requests = self.graph_requests = self.batch_requests = 0
        self.batch_items = self.throttled = 0
        self.by_cloud = {}
        self._dns_base = self.dns_source()

    def count_throttled(self) -> None:
        """Count one 429 sent (a fault or a budget)."""
        self.throttled += 1

    def count_cloud(self, cloud: str, counter: str) -> None:
        """Count one request of `counter` ("token_requests", "graph_requests") made to `cloud`."""
        counts = self.by_cloud.setdefault(cloud, {"token_requests": 0, "graph_requests": 0})
        counts[counter] += 1

    def clouds_snapshot(self) -> dict[str, dict[str, int]]:
        """The token and Graph requests per national cloud, JSON-ready."""
        return {cloud: dict(counts) for cloud, counts in sorted(self.by_cloud.items())}

    def snapshot(self) -> dict[str, int]:
        """Return the counters as a JSON-ready mapping."""
        return {
            "token_requests": self.token_requests,
            "graph_requests": self.graph_requests,
            "batch_requests": self.batch_requests,
            "batch_items": self.batch_items,
            "throttled": self.throttled,
            "dns_queries": self.dns_queries,
        }
