"""Graph credentials: verify against Microsoft before saving, rotate without losing the old secret."""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from m365connect.codes import ErrorCode
from m365connect.credentials import repository
from m365connect.credentials.certificates import (
    Proof,
    check_body_proof,
    client_credential_of,
    proof_of,
)
from m365connect.credentials.models import GraphCredential
from m365connect.credentials.schemas import CredentialCreate, CredentialRead, CredentialUpdate
from m365connect.credentials.sealing import UnreadableSecrets, open_client_credential, open_for_use
from m365connect.crypto import SecretBox, SecretBoxError, credential_secret_aad
from m365connect.db.base import utcnow
from m365connect.db.transactions import Transactions
from m365connect.errors import BadRequest, NotFound, ServiceUnavailable, ValidationCodeError
from m365connect.events.service import record_event
from m365connect.events.types import EventType
from m365connect.microsoft.cloud_clients import Clouds
from m365connect.microsoft.clouds import tenant_domain_clouds
from m365connect.microsoft.token import (
    AccessToken,
    ClientCredential,
    TokenClient,
    TokenRejected,
    TokenUnavailable,
)
from m365connect.wire import iso_z

REQUIRED_PERMISSIONS = ("Mail.Send", "User.Read.All")
RESERVED_TENANTS = frozenset({"common", "organizations", "consumers"})
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DOMAIN = re.compile(r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")

VALID = "VALID"
EXPIRED = "EXPIRED"
INVALID = "INVALID"
SECONDS_PER_DAY = 86400


class Announcer(Protocol):
    """Reports a credential's status change (events) in the caller's transaction: health/announcements.py,
    passed in by the composition root so that this package does not import the health package."""

    async def __call__(self, session: AsyncSession, *, credential_id: int, now: datetime) -> None: ...


@dataclass(frozen=True)
class Services:
    """What the credential operations need besides the session."""

    box: SecretBox
    clouds: Clouds
    unreadable: UnreadableSecrets
    announce: Announcer | None = None  # None: status changes are reported by the next health check


async def _announce(services: Services, session: AsyncSession, credential: GraphCredential) -> None:
    if services.announce is not None:
        await services.announce(session, credential_id=credential.id, now=utcnow())


def credential_status(credential: GraphCredential, *, now: datetime | None = None) -> str:
    """EXPIRED once the stated expiry passed or when Microsoft last said the secret expired, INVALID when
    the last verification failed otherwise, else VALID."""
    if credential.secret_expires_at <= (now or utcnow()):
        return EXPIRED
    if credential.verification_status in (INVALID, EXPIRED):
        return credential.verification_status
    return VALID


def expires_in_days(credential: GraphCredential, *, now: datetime | None = None) -> int:
    """Whole days until the secret or certificate expires (floor: negative once past)."""
    return math.floor((credential.secret_expires_at - (now or utcnow())).total_seconds() / SECONDS_PER_DAY)


def to_read(credential: GraphCredential) -> CredentialRead:
    """The wire shape (never the secret)."""
    now = utcnow()
    granted = sorted(str(role) for role in credential.granted_permissions or [])
    return CredentialRead(
        credential_id=credential.id,
        tenant_id=credential.tenant_id,
        client_id=credential.client_id,
        secret_expires_at=iso_z(credential.secret_expires_at) or "",
        name=credential.name,
        cloud=credential.cloud,
        credential_type=credential.credential_type,
        certificate_thumbprint=credential.certificate_thumbprint,
        status=credential_status(credential, now=now),
        verified_at=iso_z(credential.verified_at),
        checked_at=iso_z(credential.checked_at),
        expires_in_days=expires_in_days(credential, now=now),
        granted_permissions=granted,
        missing_permissions=[p for p in REQUIRED_PERMISSIONS if p not in granted],
    )


def check_identifiers(*, tenant_id: str, client_id: str, cloud: str = "global") -> None:
    """Local format checks before anything is sent to Microsoft (a tenant domain of another cloud too)."""
    tenant = tenant_id.lower()
    if tenant in RESERVED_TENANTS or not (_GUID.match(tenant) or _DOMAIN.match(tenant)):
        raise ValidationCodeError(ErrorCode.INVALID_TENANT_ID)
    if cloud not in tenant_domain_clouds(tenant):
        raise ValidationCodeError(ErrorCode.INVALID_TENANT_ID)
    if not _GUID.match(client_id):
        raise ValidationCodeError(ErrorCode.INVALID_CLIENT_ID)


async def verify(tokens: TokenClient, credential: ClientCredential) -> AccessToken:
    """Obtain a fresh Graph token with these values, or the documented error."""
    try:
        return await tokens.verify(credential)
    except TokenRejected as exc:
        raise ValidationCodeError(exc.code) from None
    except TokenUnavailable as exc:
        raise ServiceUnavailable(retry_after=int(exc.retry_after) + 1) from None


def _record_verification(credential: GraphCredential, token: AccessToken) -> None:
    credential.verification_status = VALID
    credential.verified_at = credential.checked_at = utcnow()
    credential.granted_permissions = sorted(token.roles or ())


async def list_credentials(session: AsyncSession, *, account_id: int) -> Sequence[GraphCredential]:
    """The account's credentials, oldest first."""
    return await repository.list_for_account(session, account_id=account_id)


async def _refuse_duplicate(
    session: AsyncSession, *, account_id: int, tenants: Sequence[str], client_id: str
) -> None:
    if await repository.find_duplicate(
        session, account_id=account_id, tenant_keys=tenants, client_id=client_id
    ):
        raise ValidationCodeError(ErrorCode.CREDENTIAL_ALREADY_EXISTS)


async def create_credential(
    transactions: Transactions, services: Services, *, account_id: int, data: CredentialCreate
) -> GraphCredential:
    """Verify the app registration against Microsoft, then store it with its secret sealed.

    Two transactions, with the token request between them (none stays open while Microsoft answers).
    """
    tenant, client_id = data.tenant_id.strip(), data.client_id.strip().lower()
    if data.client_secret is None and data.certificate is None:
        raise BadRequest("Field 'client_secret' is required")
    check_body_proof(data)
    check_identifiers(tenant_id=tenant, client_id=client_id, cloud=data.cloud)
    proof = await asyncio.to_thread(proof_of, data)  # ~30 ms of RSA checks: off the loop
    async with transactions.begin() as session:
        await _refuse_duplicate(session, account_id=account_id, tenants=[tenant], client_id=client_id)
    token = await verify(services.clouds.tokens(data.cloud), client_credential_of(tenant, client_id, proof))
    tenant_key = (token.tenant_guid or tenant).lower()
    async with transactions.begin() as session:
        await _refuse_duplicate(session, account_id=account_id, tenants=[tenant_key], client_id=client_id)
        number = await repository.count_for_account(session, account_id=account_id) + 1
        credential = GraphCredential(
            account_id=account_id,
            name=data.name or f"Microsoft Graph credential {number}",
            tenant_id=tenant,
            tenant_key=tenant_key,
            client_id=client_id,
            cloud=data.cloud,
            credential_type=proof.credential_type,
            certificate_thumbprint=proof.thumbprint,
            secret_ciphertext=b"",
            secret_expires_at=proof.expires_at,
        )
        _record_verification(credential, token)
        try:
            async with session.begin_nested():
                await repository.add(session, credential=credential)
        except IntegrityError:
            raise ValidationCodeError(ErrorCode.CREDENTIAL_ALREADY_EXISTS) from None
        credential.secret_ciphertext = services.box.seal(
            proof.material, associated_data=credential_secret_aad(credential.id)
        )
        await session.flush()
        await _record(session, credential, EventType.CREDENTIAL_CREATED)
    return credential


async def _record(session: AsyncSession, credential: GraphCredential, type: EventType) -> None:
    """The event of a change, last in its transaction (events.service: the account lock)."""
    data = to_read(credential).model_dump(mode="json")
    await record_event(session, account_id=credential.account_id, type=type, data=data)


IMMUTABLE_FIELDS = ("tenant_id", "client_id", "cloud")


def _check_update(data: CredentialUpdate) -> None:
    for field in IMMUTABLE_FIELDS:
        if field in (data.model_extra or {}):
            raise BadRequest(f"Field '{field}' cannot be changed")
    given = data.model_fields_set - set(data.model_extra or {})  # unknown fields stay ignored
    if not given:
        raise BadRequest("Send at least one of 'name', 'client_secret', 'secret_expires_at', 'certificate'")
    for field in sorted(given):
        if getattr(data, field) is None:
            raise BadRequest(f"Field '{field}' must not be null")
    check_body_proof(data)


async def update_credential(
    transactions: Transactions,
    services: Services,
    *,
    account_id: int,
    credential_id: int,
    data: CredentialUpdate,
) -> GraphCredential:
    """Rename and/or rotate the secret; a new secret is verified first and the old one stays on failure.

    A rotation is two transactions with the token request between them; the credential is read again in
    the second (it may have been deleted meanwhile: 404, nothing verified is lost).
    """
    _check_update(data)
    rotation: tuple[Proof, AccessToken] | None = None
    if data.client_secret is not None or data.certificate is not None:
        proof = await asyncio.to_thread(proof_of, data)  # ~30 ms of RSA checks: off the loop
        async with transactions.begin() as session:
            current = await get_credential(session, account_id=account_id, credential_id=credential_id)
        tokens = services.clouds.tokens(current.cloud)
        token = await verify(tokens, client_credential_of(current.tenant_id, current.client_id, proof))
        rotation = (proof, token)
    async with transactions.begin() as session:
        credential = await get_credential(session, account_id=account_id, credential_id=credential_id)
        if rotation is not None:
            proof, token = rotation
            _forget_cached_token(services, credential)
            aad = credential_secret_aad(credential.id)
            credential.secret_ciphertext = services.box.seal(proof.material, associated_data=aad)
            credential.secret_expires_at = proof.expires_at
            credential.credential_type = proof.credential_type
            credential.certificate_thumbprint = proof.thumbprint
            credential.reminded_days_left = None  # a new secret gets its own expiry reminders
            _record_verification(credential, token)
        if data.name is not None:
            credential.name = data.name
        credential.updated_at = utcnow()
        await session.flush()
        if rotation is not None:
            await _announce(services, session, credential)  # a failing credential recovers by rotation
        await _record(session, credential, EventType.CREDENTIAL_UPDATED)
    return credential


def _forget_cached_token(services: Services, credential: GraphCredential) -> None:
    # An old secret that does not open (its key left the ring, its row was altered) has no cached token to
    # forget: a new secret is accepted all the same, which is how an account repairs such a credential.
    with contextlib.suppress(SecretBoxError):
        services.clouds.tokens(credential.cloud).forget(open_client_credential(services.box, credential))


async def get_credential(session: AsyncSession, *, account_id: int, credential_id: int) -> GraphCredential:
    """One of the account's credentials, or 404."""
    credential = await repository.get_for_account(session, account_id=account_id, credential_id=credential_id)
    if credential is None:
        raise NotFound()
    return credential


async def delete_credential(session: AsyncSession, *, account_id: int, credential_id: int) -> None:
    """Delete, unless an ACTIVE mailbox uses it (decided by the database, race-free); the event carries
    the credential as it was."""
    try:
        async with session.begin_nested():
            deleted = await repository.delete_for_account(
                session, account_id=account_id, credential_id=credential_id
            )
    except IntegrityError:
        raise ValidationCodeError(ErrorCode.MICROSOFT_GRAPH_CREDENTIAL_IN_USE) from None
    if deleted is None:
        raise NotFound()
    await _record(session, deleted, EventType.CREDENTIAL_DELETED)


async def resolve_for_bulk(
    session: AsyncSession, *, account_id: int, credential_id: int | None
) -> GraphCredential:
    """The credential a bulk request uses, or the documented 422.

    An INVALID credential named explicitly is tried again (a credential whose problem was fixed in
    Entra heals itself); an EXPIRED one is refused without asking Microsoft.
    """
    if credential_id is not None:
        credential = await repository.get_for_account(
            session, account_id=account_id, credential_id=credential_id
        )
        if credential is None or credential_status(credential) == EXPIRED:
            raise ValidationCodeError(ErrorCode.INVALID_CREDENTIAL_ID)
        return credential
    usable = [
        item
        for item in await repository.list_for_account(session, account_id=account_id)
        if credential_status(item) == VALID
    ]
    if not usable:
        raise ValidationCodeError(ErrorCode.NO_VALID_CREDENTIAL)
    if len(usable) > 1:
        raise ValidationCodeError(ErrorCode.CREDENTIAL_ID_REQUIRED)
    return usable[0]


async def token_for_bulk(
    transactions: Transactions, services: Services, *, credential: GraphCredential
) -> tuple[ClientCredential, AccessToken]:
    """A token for a stored credential (no transaction open while Microsoft answers). A changed verdict is
    recorded in a transaction of its own: a refusal marks the credential INVALID even though the request
    then fails with 422, and a credential that works again becomes VALID."""
    client_credential = open_for_use(services.box, services.unreadable, credential)
    try:
        token = await services.clouds.tokens(credential.cloud).acquire(client_credential)
    except TokenRejected as refused:
        credential.verification_status = (
            EXPIRED if refused.code is ErrorCode.CLIENT_SECRET_EXPIRED else INVALID
        )
        credential.checked_at = utcnow()
        async with transactions.begin() as session:
            await repository.set_verification(session, credential=credential)
            await _announce(services, session, credential)
        raise ValidationCodeError(ErrorCode.INVALID_CREDENTIAL_ID) from None
    except TokenUnavailable as exc:
        raise ServiceUnavailable(retry_after=int(exc.retry_after) + 1) from None
    if credential.verification_status != VALID:
        _record_verification(credential, token)
        async with transactions.begin() as session:
            await repository.set_verification(session, credential=credential)
            await _announce(services, session, credential)
    return client_credential, token
