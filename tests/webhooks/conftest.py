"""Fixtures of the webhook tests: the service's state with a fake resolver, a transactional fake enqueue,
plain http and private addresses allowed (the local receiver is on 127.0.0.1) and a 0.5 s timeout."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from m365connect.settings import Settings
from m365connect.state import AppState, trust_context
from tests.webhooks.support import TEST_TIMEOUT, FakeResolver, TransactionalEnqueue, api_over, with_webhooks


@pytest.fixture
def resolver() -> FakeResolver:
    """DNS answers the test sets."""
    return FakeResolver()


@pytest.fixture
def enqueue() -> TransactionalEnqueue:
    """The jobs that committed transactions enqueued."""
    return TransactionalEnqueue()


@pytest.fixture
def hooks_state(state: AppState, resolver: FakeResolver, enqueue: TransactionalEnqueue) -> AppState:
    """Private networks allowed (the receiver is local), the fake resolver and enqueue, a short timeout."""
    return with_webhooks(
        state,
        resolver=resolver,
        enqueue=enqueue,
        allow_private=True,
        timeout=TEST_TIMEOUT,
        ssl_context=trust_context(),  # system trust, built once
    )


@pytest.fixture
def strict_state(hooks_state: AppState) -> AppState:
    """As an operator runs it: https to public addresses only."""
    return with_webhooks(hooks_state, allow_private=False)


@pytest.fixture
async def hooks_client(settings: Settings, hooks_state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    """The API over hooks_state."""
    async with api_over(settings, hooks_state) as http:
        yield http


@pytest.fixture
async def strict_client(settings: Settings, strict_state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    """The API over strict_state."""
    async with api_over(settings, strict_state) as http:
        yield http
