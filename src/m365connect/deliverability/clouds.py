"""What Microsoft 365 publishes for outbound mail in each national cloud: the SPF include a domain must
reach and the forms of the DKIM CNAME targets (docs/deliverability.md, "National clouds").

Cloud names are the credential's `cloud` (plain strings: this package imports nothing of the service).
A GCC High or DoD tenant sends from the ranges behind `spf.protection.office365.us`, a 21Vianet tenant
from those behind `spf.protection.partner.outlook.cn`; each cloud's include counts in that cloud only,
because the global include does not list a national cloud's senders (nor the reverse).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import dns.name

DEFAULT_CLOUD = "global"
_SELECTOR = r"^(?P<selector>selector[12])-(?P<label>[a-z0-9-]+)\._domainkey\."


@dataclass(frozen=True)
class MailCloud:
    """One cloud's SPF include and DKIM CNAME target pattern."""

    spf_include: dns.name.Name
    dkim_target: re.Pattern[str]  # groups: selector, label (the domain with dashes)

    @property
    def spf_term(self) -> str:
        """The include term as an administrator types it."""
        return f"include:{self.spf_include.to_text(omit_final_dot=True)}"


def _cloud(include: str, *initial_domain_suffixes: str, new_form: bool = False) -> MailCloud:
    initial = "|".join(rf"[a-z0-9-]+\.{re.escape(suffix)}" for suffix in initial_domain_suffixes)
    # The May 2025 form <prefix>.<partition>-v<N>.dkim.mail.microsoft is documented for the global cloud only.
    targets = f"{initial}|[a-z0-9-]+\\.[a-z0-9]+-v[0-9]+\\.dkim\\.mail\\.microsoft" if new_form else initial
    return MailCloud(dns.name.from_text(include), re.compile(f"{_SELECTOR}(?:{targets})$"))


MAIL_CLOUDS: Mapping[str, MailCloud] = MappingProxyType(
    {
        "global": _cloud("spf.protection.outlook.com", "onmicrosoft.com", new_form=True),
        # GCC High and DoD: initial domains are <tenant>.onmicrosoft.us
        "usgov": _cloud("spf.protection.office365.us", "onmicrosoft.us"),
        "usgov-dod": _cloud("spf.protection.office365.us", "onmicrosoft.us"),
        # operated by 21Vianet: initial domains are <tenant>.partner.onmschina.cn
        "china": _cloud("spf.protection.partner.outlook.cn", "partner.onmschina.cn"),
    }
)


def mail_cloud(cloud: str) -> MailCloud:
    """The table row of a cloud; ValueError for a name the table does not hold."""
    try:
        return MAIL_CLOUDS[cloud]
    except KeyError:
        raise ValueError(f"unknown cloud {cloud!r}") from None
