"""One simulator for the whole session, on the example scenario, reached over real HTTPS with its CA."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator

import httpx
import pytest

from m365connect.simulator import FakeMicrosoft, Faults
from m365connect.simulator.budgets import Budgets

from .budgeted import TENANTS, ManualClock, SizedTenant, budget_scenario
from .budgeted import token_form as budget_token_form
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


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="module")
def budgeted(clock: ManualClock) -> Iterator[FakeMicrosoft]:
    """A simulator of the sized tenants whose budgets are timed by the manual clock."""
    with FakeMicrosoft(budget_scenario(), clock=clock) as running:
        yield running


@pytest.fixture(scope="module")
def budget_client(budgeted: FakeMicrosoft) -> Iterator[httpx.Client]:
    tls = ssl.create_default_context(cafile=str(budgeted.ca_path))
    with httpx.Client(base_url=budgeted.base_url, verify=tls, timeout=10) as http:
        yield http


@pytest.fixture(scope="module")
def budget_bearer(budgeted: FakeMicrosoft, budget_client: httpx.Client) -> Callable[..., dict[str, str]]:
    """Authorization headers of an app of a sized tenant; tokens are taken with the budgets off."""
    cache: dict[tuple[str, int], dict[str, str]] = {}

    def headers(tenant: SizedTenant, app: int = 0) -> dict[str, str]:
        if (tenant.id, app) not in cache:
            assert not budgeted.budgets.enabled
            response = budget_client.post(
                f"/{tenant.id}/oauth2/v2.0/token", data=budget_token_form(tenant, app)
            )
            response.raise_for_status()
            cache[tenant.id, app] = {"Authorization": f"Bearer {response.json()['access_token']}"}
        return cache[tenant.id, app]

    for tenant in TENANTS.values():  # every token before any test turns the budgets on
        for app in range(len(tenant.apps)):
            headers(tenant, app)
    return headers


@pytest.fixture(autouse=True)
def _clean_budgets(request: pytest.FixtureRequest) -> Iterator[None]:
    """Budgets back to their defaults (off), meters emptied, faults off after every test using budgeted."""
    yield
    if "budgeted" in request.fixturenames:
        running: FakeMicrosoft = request.getfixturevalue("budgeted")
        running.budgets.update(Budgets().model_dump())
        running.budget_meter.reset()
        running.faults.update(Faults().model_dump())
