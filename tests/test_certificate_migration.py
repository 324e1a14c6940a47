"""Migration 0005: credentials stored before certificates read `credential_type: client_secret` with no
thumbprint; the downgrade refuses while a certificate credential exists (its sealed private key would
otherwise be sent as a client secret), and drops both columns once there is none."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from m365connect.credentials.models import GraphCredential
from m365connect.credentials.service import to_read
from m365connect.db.engine import create_engine
from tests.migration_steps import at_revision, columns, downgrade, old_account, old_credential, upgrade

NEW_COLUMNS = {"credential_type", "certificate_thumbprint"}


async def test_old_rows_are_secrets_and_the_downgrade_protects_certificates(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with at_revision(engine, "0004") as connection:
            assert not NEW_COLUMNS & await columns(connection, "graph_credentials")
            await old_credential(connection, await old_account(connection))
            await upgrade(connection)
            row = (await connection.execute(select(GraphCredential))).one()
            read = to_read(GraphCredential(**row._asdict()))
            assert (read.credential_type, read.certificate_thumbprint) == ("client_secret", None)

            await connection.execute(
                text(
                    "UPDATE graph_credentials"
                    " SET credential_type = 'certificate', certificate_thumbprint = 'AB'"
                )
            )
            with pytest.raises(RuntimeError, match="certificate credentials exist"):
                await downgrade(connection, "0004")
            assert await columns(connection, "graph_credentials") >= NEW_COLUMNS

            await connection.execute(
                text("DELETE FROM graph_credentials WHERE credential_type = 'certificate'")
            )
            await downgrade(connection, "0004")
            assert not NEW_COLUMNS & await columns(connection, "graph_credentials")
    finally:
        await engine.dispose()
