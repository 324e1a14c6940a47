"""Names from examples/scenario.yaml that the service tests rely on."""

from __future__ import annotations

CONTOSO_TENANT = "6f1c2a7e-5d1b-4c39-9a3e-2f7b1d9c0a11"
CONTOSO_DOMAIN = "contoso.onmicrosoft.com"
WORKING_APP = "2b7e4f1a-9c3d-4e8b-a1f5-6d2c8e0b4a71"
WORKING_SECRET = "Wp8Q~c0ntoso.Working.Secret_9f3kLm2Xq7Rt"
WORKING_SECRET_2 = "Wp9Q~c0ntoso.Rotated.Secret_2aBc4De6Fg8H"
EXPIRED_APP = "3c8f5a2b-0d4e-4f9c-b2a6-7e3d9f1c5b82"
EXPIRED_SECRET = "Lg7Q~c0ntoso.Expired.Secret_4hJk8Pq1Zv5Ns"
DISABLED_APP = "4d9a6b3c-1e5f-4a0d-83b7-8f4e0a2d6c93"
DISABLED_SECRET = "Rt6Q~c0ntoso.Disabled.Secret_7gHj2Wq9Xc3Lp"
UNCONSENTED_APP = "5e0b7c4d-2f6a-4b1e-94c8-9a5f1b3e7da4"
UNCONSENTED_SECRET = "Uc5Q~c0ntoso.NoRoles.Secret_1mNb6Vc8Kx4Tz"
READER_APP = "6f1c8d5e-3a7b-4c2f-a5d9-0b6a2c4f8eb5"
READER_SECRET = "Dr4Q~c0ntoso.ReadOnly.Secret_3pLo9Ik2Ju7Yh"
SCOPED_APP = "8b3e0f7a-5c9d-4e1b-a7f2-2d8c4e6b0fd7"  # RBAC for Applications: jim, pam and oscar only
SCOPED_SECRET = "Sc3Q~c0ntoso.RbacScoped.Secret_5tGb7Yh1Uj3Ik"
FABRIKAM_TENANT = "0b9d3c6a-8f2e-4a71-b5c4-3d2e1f0a9b87"
FABRIKAM_APP = "7a2d9e6f-4b8c-4d3a-b6e0-1c7b3d5a9fc6"
FABRIKAM_SECRET = "Wp8Q~f4brikam.Working.Secret_6tRe3Wq1Zx9Mk"
UNKNOWN_TENANT = "99999999-9999-4999-8999-999999999999"
UNKNOWN_APP = "88888888-8888-4888-8888-888888888888"
FUTURE = "2030-01-31T23:59:59Z"

# The certificate app (keyCredentials only; keys in examples/certificates/, test keys).
CERTIFICATE_APP = "8c4a1f2e-6b3d-4f7a-9e5c-2d1b7a3f6e08"

# Tailwind Traders: a GCC High (usgov) tenant whose domain publishes the usgov SPF include and DKIM targets.
TAILWIND_TENANT = "9c4e2b7d-3a5f-4e8c-b1d6-5f2a8c0e7b19"
TAILWIND_APP = "a1d5c3e9-7b2f-4a6d-8e0c-3f9b1d7a5c42"
TAILWIND_SECRET = "Wp8Q~t4ilwind.Gov.Secret_8uJm2Nb5Vc7Xz"
TAILWIND_MAILBOX = "dwight@tailwindtraders.us"
