"""The benchmark's scenario: N users spread over D domains of one tenant, with correct SPF and DKIM."""

from __future__ import annotations

import base64
import functools
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

TENANT_ID = "6f1c2a7e-5d1b-4c39-9a3e-2f7b1d9c0a11"
CLIENT_ID = "2b7e4f1a-9c3d-4e8b-a1f5-6d2c8e0b4a71"
CLIENT_SECRET = "Bn8Q~bench.Working.Secret_9f3kLm2Xq7Rt"  # a simulator test value, not a real secret
ROLES = ["User.Read.All", "Mail.Send", "MailboxSettings.Read"]
# Microsoft's own record (examples/scenario.yaml): the include every domain's SPF walks into.
MICROSOFT_SPF = (
    "v=spf1 ip4:40.92.0.0/15 ip4:40.107.0.0/16 ip4:52.100.0.0/15 ip4:52.102.0.0/16 ip4:52.103.0.0/17 "
    "ip4:104.47.0.0/17 ip6:2a01:111:f400::/48 ip6:2a01:111:f403::/49 ip6:2a01:111:f403:8000::/51 "
    "ip6:2a01:111:f403:c000::/51 ip6:2a01:111:f403:f000::/52 -all"
)


def credential_body(name: str) -> dict[str, str]:
    """The body that saves the benchmark tenant's app as a credential."""
    return {
        "tenant_id": TENANT_ID,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "secret_expires_at": "2099-12-31T23:59:59Z",
        "name": name,
    }


def domain(index: int) -> str:
    """The name of domain `index`."""
    return f"domain{index}.example"


def address(index: int, domains: int) -> str:
    """The address of user `index`: users are dealt round-robin over the domains."""
    return f"user{index}@{domain(index % domains)}"


@functools.cache
def dkim_public_key() -> str:
    """One real 2048-bit RSA key (SubjectPublicKeyInfo, base64), reused for every domain."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def _txt(value: str) -> str:
    # A zone-file TXT of 255-byte strings (the DNS server would split a longer one the same way).
    return " ".join(f'"{value[i : i + 255]}"' for i in range(0, len(value), 255))


def _zones(domains: int) -> dict[str, str]:
    zones = {
        "spf.protection.outlook.com": (
            "@ 3600 IN SOA ns1-proddns.glbdns.o365filtering.com. azuredns-hostmaster.microsoft.com. "
            f"1 3600 300 2419200 300\n@ 3600 IN TXT {_txt(MICROSOFT_SPF)}\n"
        )
    }
    keys = ["@ 3600 IN SOA ns1.dkim.mail.microsoft. hostmaster.dkim.mail.microsoft. 1 3600 600 86400 300"]
    key_record = _txt(f"v=DKIM1; k=rsa; p={dkim_public_key()}")
    for d in range(domains):
        name = domain(d)
        dashed = name.replace(".", "-")
        zones[name] = "\n".join(
            [
                f"@ 3600 IN SOA ns1.{name}. hostmaster.{name}. 1 3600 600 86400 300",
                f"@ 3600 IN MX 0 {dashed}.mail.protection.outlook.com.",
                '@ 3600 IN TXT "v=spf1 include:spf.protection.outlook.com -all"',
                *(
                    f"selector{s}._domainkey 3600 IN CNAME "
                    f"selector{s}-{dashed}._domainkey.bench.n-v1.dkim.mail.microsoft."
                    for s in (1, 2)
                ),
                f'_dmarc 3600 IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@{name}"',
                "",
            ]
        )
        keys += [f"selector{s}-{dashed}._domainkey.bench.n-v1 3600 IN TXT {key_record}" for s in (1, 2)]
    zones["dkim.mail.microsoft"] = "\n".join([*keys, ""])
    return zones


def build(*, users: int, domains: int) -> dict[str, Any]:
    """The scenario as a dict (the simulator's YAML/JSON format, docs/simulator.md)."""
    return {
        "tenants": [
            {
                "id": TENANT_ID,
                "domains": [domain(d) for d in range(domains)],
                "apps": [
                    {
                        "client_id": CLIENT_ID,
                        "name": "Woodpecker connector (bench)",
                        "roles": ROLES,
                        "secrets": [{"value": CLIENT_SECRET, "expires_at": "2099-12-31T23:59:59Z"}],
                    }
                ],
                "users": [
                    {
                        "user_principal_name": address(i, domains),
                        "display_name": f"User {i}",
                        "proxy_addresses": [f"SMTP:{address(i, domains)}"],
                    }
                    for i in range(users)
                ],
            }
        ],
        "dns": {"zones": _zones(domains)},
    }
