"""What the pages show, computed from the services' read shapes (no rule of its own)."""

from __future__ import annotations

from dataclasses import dataclass

from m365connect.credentials.schemas import CredentialRead
from m365connect.explanations import Context, admin_consent_url

WARN_DAYS = 30  # the countdown turns red below this many days (API.md 6's first reminder)


@dataclass(frozen=True)
class CredentialView:
    """A credential as the credentials page shows it."""

    item: CredentialRead
    days_left: int
    consent_url: str

    @property
    def expiring(self) -> bool:
        """Under 30 days left (or expired): shown in red."""
        return self.days_left < WARN_DAYS

    @property
    def countdown(self) -> str:
        """ "Expires in 12 days", "Expires today", "Expired 3 days ago"."""
        if self.days_left > 1:
            return f"Expires in {self.days_left} days"
        if self.days_left == 1:
            return "Expires in 1 day"
        if self.days_left == 0:
            return "Expires today"
        ago = -self.days_left
        return f"Expired {ago} day{'s' if ago != 1 else ''} ago"


def credential_view(item: CredentialRead, *, login_url: str) -> CredentialView:
    """The countdown (the service's own `expires_in_days`) and the admin-consent link of the credential's
    cloud."""
    return CredentialView(
        item=item,
        days_left=item.expires_in_days,
        consent_url=admin_consent_url(
            tenant_id=item.tenant_id, client_id=item.client_id, login_url=login_url, cloud=item.cloud
        ),
    )


def consent_context(item: CredentialRead, *, login_url: str) -> Context:
    """What the explanations fill in for this credential."""
    return Context(
        tenant_id=item.tenant_id,
        client_id=item.client_id,
        credential_id=item.credential_id,
        login_url=login_url,
        cloud=item.cloud,
    )
