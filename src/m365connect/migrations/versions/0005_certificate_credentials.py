"""graph_credentials.credential_type and certificate_thumbprint: certificate credentials (issue 10 item 3).

NOT NULL with the server default 'client_secret': every credential stored before certificates existed
holds a client secret, so that is the true value of those rows. The thumbprint is null for secrets. A
certificate's private key is sealed in secret_ciphertext, like a secret (no new secret column).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "graph_credentials",
        sa.Column("credential_type", sa.String(16), nullable=False, server_default="client_secret"),
    )
    op.add_column("graph_credentials", sa.Column("certificate_thumbprint", sa.String(40), nullable=True))


def downgrade() -> None:
    # Without credential_type a certificate's sealed private key would be sent as a client secret: refuse
    # rather than leave rows that can only fail.
    certificates = op.get_bind().execute(
        sa.text("SELECT COUNT(*) FROM graph_credentials WHERE credential_type = 'certificate'")
    )
    if certificates.scalar():
        raise RuntimeError("certificate credentials exist: delete them before downgrading below 0005")
    # batch mode: SQLite before 3.35 has no DROP COLUMN, so Alembic rebuilds the table there.
    with op.batch_alter_table("graph_credentials") as batch:
        batch.drop_column("certificate_thumbprint")
        batch.drop_column("credential_type")
