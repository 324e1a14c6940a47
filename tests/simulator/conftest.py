"""One simulator for the whole session, on the example scenario, reached over real HTTPS with its CA."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator

import httpx
import pytest

from m365connect.simulator import FakeMicrosoft, Faults

from .example import APPS, EXAMPLE, token_form


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeMicrosoft]:
    with FakeMicrosoft(EXAMPLE) as running:
        yield running


@pytest.fixture(scope="session")
def tls(fake: FakeMicrosoft) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(fake.ca_path))


@pytest.fixture(scope="session")
def client(fake: FakeMicrosoft, tls: ssl.SSLContext) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.base_url, verify=tls, timeout=10) as http:
        yield http


@pytest.fixture(scope="session")
def bearer(client: httpx.Client) -> Callable[[str], dict[str, str]]:
    """Authorization headers of an example app, one token per app for the session."""
    cache: dict[str, dict[str, str]] = {}

    def headers(app: str) -> dict[str, str]:
        if app not in cache:
            response = client.post(f"/{APPS[app].tenant}/oauth2/v2.0/token", data=token_form(app))
            response.raise_for_status()
            cache[app] = {"Authorization": f"Bearer {response.json()['access_token']}"}
        return cache[app]

    return headers


@pytest.fixture(autouse=True)
def _clean_simulator(request: pytest.FixtureRequest) -> Iterator[None]:
    """Faults back to off (and the seed restarted) and sent mail forgotten after every test using fake."""
    yield
    if "fake" in request.fixturenames:
        running: FakeMicrosoft = request.getfixturevalue("fake")
        running.faults.update(Faults().model_dump())
        running.sent_mail.clear()
