"""SPF, DKIM and DMARC checks of mailbox domains for Microsoft 365, over an injected DNS resolver."""

from m365connect.deliverability.checker import DeliverabilityChecker, DomainDeliverability, normalize_domain
from m365connect.deliverability.resolver import build_resolver

__all__ = ["DeliverabilityChecker", "DomainDeliverability", "build_resolver", "normalize_domain"]
