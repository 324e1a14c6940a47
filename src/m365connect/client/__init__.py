"""Command-line client of a running m365connect service (HTTP only; no service internals)."""

from m365connect.client.errors import ApiError, ClientError, CodeError, InputError, ServiceUnreachable
from m365connect.client.http import ItemResult, ServiceClient

__all__ = [
    "ApiError",
    "ClientError",
    "CodeError",
    "InputError",
    "ItemResult",
    "ServiceClient",
    "ServiceUnreachable",
]
