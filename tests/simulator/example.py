"""The example scenario's ids and secrets, as the tests use them."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "scenario.yaml"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"

CONTOSO = "6f1c2a7e-5d1b-4c39-9a3e-2f7b1d9c0a11"
FABRIKAM = "0b9d3c6a-8f2e-4a71-b5c4-3d2e1f0a9b87"


class ExampleApp(NamedTuple):
    """An app registration of the example scenario."""

    tenant: str
    client_id: str
    secret: str


APPS = {
    "connector": ExampleApp(
        CONTOSO, "2b7e4f1a-9c3d-4e8b-a1f5-6d2c8e0b4a71", "Wp8Q~c0ntoso.Working.Secret_9f3kLm2Xq7Rt"
    ),
    "expired": ExampleApp(
        CONTOSO, "3c8f5a2b-0d4e-4f9c-b2a6-7e3d9f1c5b82", "Lg7Q~c0ntoso.Expired.Secret_4hJk8Pq1Zv5Ns"
    ),
    "disabled": ExampleApp(
        CONTOSO, "4d9a6b3c-1e5f-4a0d-83b7-8f4e0a2d6c93", "Rt6Q~c0ntoso.Disabled.Secret_7gHj2Wq9Xc3Lp"
    ),
    "no_roles": ExampleApp(
        CONTOSO, "5e0b7c4d-2f6a-4b1e-94c8-9a5f1b3e7da4", "Uc5Q~c0ntoso.NoRoles.Secret_1mNb6Vc8Kx4Tz"
    ),
    "reader": ExampleApp(
        CONTOSO, "6f1c8d5e-3a7b-4c2f-a5d9-0b6a2c4f8eb5", "Dr4Q~c0ntoso.ReadOnly.Secret_3pLo9Ik2Ju7Yh"
    ),
    "scoped": ExampleApp(
        CONTOSO, "8b3e0f7a-5c9d-4e1b-a7f2-2d8c4e6b0fd7", "Sc3Q~c0ntoso.RbacScoped.Secret_5tGb7Yh1Uj3Ik"
    ),
    "fabrikam": ExampleApp(
        FABRIKAM, "7a2d9e6f-4b8c-4d3a-b6e0-1c7b3d5a9fc6", "Wp8Q~f4brikam.Working.Secret_6tRe3Wq1Zx9Mk"
    ),
}


def token_form(app: str, **overrides: str) -> dict[str, str]:
    """The client-credentials form of an example app, with fields replaced or added."""
    form = {"grant_type": "client_credentials", "client_id": APPS[app].client_id}
    return {**form, "client_secret": APPS[app].secret, "scope": GRAPH_SCOPE, **overrides}


# The certificate app (keyCredentials only); its test keys are in examples/certificates/.
CERTIFICATE_APP = "8c4a1f2e-6b3d-4f7a-9e5c-2d1b7a3f6e08"
