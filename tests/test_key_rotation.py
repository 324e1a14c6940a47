"""Re-sealing secrets with a new key never loses a secret rotated through the API at the same time."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from m365connect.credentials import repository
from m365connect.credentials.models import GraphCredential
from m365connect.credentials.sealing import ResealReport, reseal_all
from m365connect.crypto import SecretBox, credential_secret_aad, generate_key, parse_keys
from m365connect.state import AppState
from tests import scenario_values as sv
from tests.factories import create_credential


async def test_reseal_uses_the_first_key_and_compare_and_set(
    client: httpx.AsyncClient, api_key: str, state: AppState
) -> None:
    created = await create_credential(client, api_key=api_key)
    credential_id = created["credential_id"]
    aad = credential_secret_aad(credential_id)
    old_keys = state.settings.encryption_keys or ""
    new_key = generate_key()
    ring = SecretBox(parse_keys(f"{new_key},{old_keys}"))
    async with state.sessions() as session:
        before = await repository.get_secret(session, credential_id=credential_id)
        assert before is not None
        # Someone else stored another sealed value after we read `before`: the stale write must not land.
        theirs = ring.seal(sv.WORKING_SECRET_2, associated_data=aad)
        assert await repository.replace_secret(session, credential_id=credential_id, old=before, new=theirs)
        stale = ring.seal(sv.WORKING_SECRET, associated_data=aad)
        assert not await repository.replace_secret(
            session, credential_id=credential_id, old=before, new=stale
        )
        await session.commit()
    async with state.sessions() as session:
        assert await reseal_all(session, ring) == ResealReport(
            resealed=0, total=1
        )  # already under the new key: nothing to do
        row = await session.scalar(select(GraphCredential))
        assert row is not None
        assert (
            SecretBox(parse_keys(new_key)).open(row.secret_ciphertext, associated_data=aad)
            == sv.WORKING_SECRET_2
        )
        row.secret_ciphertext = SecretBox(parse_keys(old_keys)).seal(sv.WORKING_SECRET_2, associated_data=aad)
        await session.commit()
    async with state.sessions() as session:
        assert await reseal_all(session, ring) == ResealReport(resealed=1, total=1)
        await session.commit()
        sealed = await repository.get_secret(session, credential_id=credential_id)
    assert sealed is not None
    assert SecretBox(parse_keys(new_key)).open(sealed, associated_data=aad) == sv.WORKING_SECRET_2
