"""Migration 0005: credentials stored before certificates read `credential_type: client_secret` with no
thumbprint; the downgrade refuses while a certificate credential exists (its sealed private key would
otherwise be sent as a client secret), and drops both columns once there is none."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import select, text

from m365connect.credentials.models import GraphCredential
from m365connect.credentials.service import to_read
from m365connect.db.base import utcnow
from m365connect.db.engine import create_engine
from tests.test_cloud_migration import _columns, _migrate

NEW_COLUMNS = {"credential_type", "certificate_thumbprint"}


async def test_old_rows_are_secrets_and_the_downgrade_protects_certificates(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_migrate(command.downgrade, "0004"))
            assert not NEW_COLUMNS & await connection.run_sync(_columns)
            account = await connection.scalar(
                text("INSERT INTO accounts (name, created_at) VALUES ('acme', :now) RETURNING id"),
                {"now": utcnow()},
            )
            await connection.execute(
                text(
                    "INSERT INTO graph_credentials (account_id, name, tenant_id, tenant_key, client_id,"
                    " secret_ciphertext, secret_expires_at, verification_status, created_at, updated_at)"
                    " VALUES (:account, 'old', 'contoso.onmicrosoft.com', 'contoso.onmicrosoft.com',"
                    " '2b7e4f1a-9c3d-4e8b-a1f5-6d2c8e0b4a71', :blob, :later, 'VALID', :now, :now)"
                ),
                {"account": account, "blob": b"x", "later": utcnow().replace(year=2030), "now": utcnow()},
            )
            await connection.run_sync(_migrate(command.upgrade, "head"))
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
                await connection.run_sync(_migrate(command.downgrade, "0004"))
            assert await connection.run_sync(_columns) >= NEW_COLUMNS

            await connection.execute(
                text("DELETE FROM graph_credentials WHERE credential_type = 'certificate'")
            )
            await connection.run_sync(_migrate(command.downgrade, "0004"))
            assert not NEW_COLUMNS & await connection.run_sync(_columns)
    finally:
        async with engine.begin() as connection:  # back to head whatever happened: later tests need it
            await connection.run_sync(_migrate(command.upgrade, "head"))
        await engine.dispose()
