"""`m365connect credentials add/rotate` with a certificate (PEM, or PKCS#12 with a hidden password) and in a
national cloud, against the real service on a real socket (the `service` fixture of test_client_cli)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from m365connect.settings import Settings
from m365connect.simulator import FakeMicrosoft
from tests import scenario_values as sv
from tests.certificates import EXPIRED, REGISTERED, load, make_certificate
from tests.test_client_cli import Service, run, service_fixture, sqlite_backend  # noqa: F401 (fixtures)

PASSWORD = "pfx-Passw0rd!"  # a test value
ADD = ["credentials", "add", "--tenant-id", sv.CONTOSO_TENANT, "--client-id", sv.CERTIFICATE_APP]


@pytest.fixture
def settings(settings: Settings, microsoft: FakeMicrosoft) -> Settings:
    """The conftest settings, plus GCC High at the simulator's usgov prefix."""
    usgov = f"{microsoft.base_url}/clouds/usgov"
    return settings.model_copy(
        update={"cloud_urls": json.dumps({"usgov": {"login_url": usgov, "graph_url": usgov}})}
    )


def _pfx(tmp_path: Path, *, password: str | None, name: str = "app.pfx") -> Path:
    path = tmp_path / name
    path.write_bytes(base64.b64decode(load(REGISTERED).pkcs12(password)))
    return path


async def test_a_certificate_credential_is_added_from_pem_and_rotated_from_a_pfx(
    service: Service, api_key: str, tmp_path: Path
) -> None:
    registered = load(REGISTERED)

    added = await run(service, *ADD, "--certificate", str(REGISTERED), api_key=api_key)

    assert f"credential 1 saved: 'Microsoft Graph credential 1', certificate {registered.thumbprint}" in (
        added.stdout
    )
    assert "status VALID" in added.stdout
    assert "PRIVATE KEY" not in added.output

    # A password-protected .pfx: the password from a hidden prompt, never echoed.
    rotated = await run(
        service,
        "credentials",
        "rotate",
        "1",
        "--certificate",
        str(_pfx(tmp_path, password=PASSWORD)),
        "--certificate-password",
        api_key=api_key,
        input=f"{PASSWORD}\n",
    )
    assert f"credential 1 rotated: 'Microsoft Graph credential 1', certificate {registered.thumbprint}" in (
        rotated.stdout
    )
    assert PASSWORD not in rotated.output
    # The same from the environment variable, without the flag.
    again = await run(
        service,
        "credentials",
        "rotate",
        "1",
        "--certificate",
        str(_pfx(tmp_path, password=PASSWORD, name="app.p12")),
        api_key=api_key,
        M365CONNECT_CERTIFICATE_PASSWORD=PASSWORD,
    )
    assert "credential 1 rotated" in again.stdout
    # An unprotected .pfx needs no password at all.
    plain = await run(
        service,
        "credentials",
        "rotate",
        "1",
        "--certificate",
        str(_pfx(tmp_path, password=None)),
        api_key=api_key,
    )
    assert "credential 1 rotated" in plain.stdout


async def test_certificate_refusals_are_explained(service: Service, api_key: str, tmp_path: Path) -> None:
    unknown = tmp_path / "unknown.pem"
    unknown.write_text(make_certificate().pem)
    unregistered = await run(service, *ADD, "--certificate", str(unknown), api_key=api_key, exit_code=1)
    assert "CERTIFICATE_NOT_REGISTERED: Microsoft does not know this certificate" in unregistered.stderr

    expired = await run(service, *ADD, "--certificate", str(EXPIRED), api_key=api_key, exit_code=1)
    assert "CLIENT_SECRET_EXPIRED" in expired.stderr

    wrong = await run(
        service,
        *ADD,
        "--certificate",
        str(_pfx(tmp_path, password=PASSWORD)),
        "--certificate-password",
        api_key=api_key,
        input="not-the-password\n",
        exit_code=1,
    )
    assert "INVALID_CERTIFICATE" in wrong.stderr
    assert "not-the-password" not in wrong.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--certificate", str(REGISTERED), "--certificate-password"], "a password is for a .pfx/.p12 file"),
        (["--certificate", "/nonexistent/app.pem"], "cannot read the certificate file /nonexistent/app.pem"),
        (["--certificate-password"], "--certificate-password goes with --certificate"),
        ([], "--secret-expires-at is required with a client secret"),
        (["--certificate", str(REGISTERED), "--certificate-password", PASSWORD], "unexpected extra argument"),
    ],
    ids=[
        "password for PEM",
        "missing file",
        "password alone",
        "secret without expiry",
        "password as argument",
    ],
)
async def test_unusable_certificate_options_are_exit_2(
    service: Service, api_key: str, args: list[str], message: str
) -> None:
    result = await run(service, *ADD, *args, api_key=api_key, exit_code=2, input="x\n")
    assert message in result.output


async def test_a_usgov_credential_is_added_with_cloud(
    service: Service, api_key: str, microsoft: FakeMicrosoft
) -> None:
    add = ["credentials", "add", "--tenant-id", sv.TAILWIND_TENANT, "--client-id", sv.TAILWIND_APP]
    secret = {"M365CONNECT_CLIENT_SECRET": sv.TAILWIND_SECRET}
    # Without --cloud the global cloud is asked, which does not know a GCC High tenant.
    refused = await run(
        service, *add, "--secret-expires-at", "2030-01-31", api_key=api_key, exit_code=1, **secret
    )
    assert "INVALID_TENANT_ID" in refused.stderr

    added = await run(
        service, *add, "--secret-expires-at", "2030-01-31", "--cloud", "usgov", api_key=api_key, **secret
    )

    assert "credential 1 saved" in added.stdout
    assert "cloud usgov" in added.stdout
    assert microsoft.stats.by_cloud == {
        "global": {"token_requests": 1, "graph_requests": 0},
        "usgov": {"token_requests": 1, "graph_requests": 0},
    }
