"""Initial schema: accounts, api_keys, graph_credentials, mailboxes.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from m365connect.db.base import IdType, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", IdType, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
        sa.UniqueConstraint("name", name="uq_accounts_name"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", IdType, primary_key=True, autoincrement=True),
        sa.Column("account_id", IdType, nullable=False),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("key_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_api_keys_account_id_accounts", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("prefix", name="uq_api_keys_prefix"),
    )
    op.create_index("ix_api_keys_account_id", "api_keys", ["account_id"])
    op.create_table(
        "graph_credentials",
        sa.Column("id", IdType, primary_key=True, autoincrement=True),
        sa.Column("account_id", IdType, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("tenant_id", sa.String(255), nullable=False),
        sa.Column("tenant_key", sa.String(255), nullable=False),
        sa.Column("client_id", sa.String(36), nullable=False),
        sa.Column("secret_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("secret_expires_at", UTCDateTime(), nullable=False),
        sa.Column("verification_status", sa.String(16), nullable=False),
        sa.Column("verified_at", UTCDateTime(), nullable=True),
        sa.Column("granted_permissions", sa.JSON(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_graph_credentials"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name="fk_graph_credentials_account_id_accounts",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "account_id", "tenant_key", "client_id", name="uq_graph_credentials_account_tenant_client"
        ),
    )
    op.create_index("ix_graph_credentials_account_id", "graph_credentials", ["account_id"])
    op.create_table(
        "mailboxes",
        sa.Column("id", IdType, primary_key=True, autoincrement=True),
        sa.Column("account_id", IdType, nullable=False),
        sa.Column("credential_id", IdType, nullable=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("name", sa.String(256), nullable=True),
        sa.Column("microsoft_user_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("spf_correct", sa.Boolean(), nullable=False),
        sa.Column("dkim_correct", sa.Boolean(), nullable=False),
        sa.Column("connected_at", UTCDateTime(), nullable=False),
        sa.Column("disconnected_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_mailboxes"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_mailboxes_account_id_accounts", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["credential_id"],
            ["graph_credentials.id"],
            name="fk_mailboxes_credential_id_graph_credentials",
            ondelete="SET NULL",
        ),
        sa.CheckConstraint(
            "status <> 'ACTIVE' OR credential_id IS NOT NULL", name="ck_mailboxes_active_has_credential"
        ),
        sa.CheckConstraint("status IN ('ACTIVE', 'DISCONNECTED')", name="ck_mailboxes_status_known"),
    )
    op.create_index("ix_mailboxes_account_id", "mailboxes", ["account_id"])
    op.create_index("ix_mailboxes_credential_id", "mailboxes", ["credential_id"])
    op.create_index(
        "uq_mailboxes_active_email",
        "mailboxes",
        ["account_id", "email"],
        unique=True,
        sqlite_where=sa.text("status = 'ACTIVE'"),
        postgresql_where=sa.text("status = 'ACTIVE'"),
    )


def downgrade() -> None:
    op.drop_table("mailboxes")
    op.drop_table("graph_credentials")
    op.drop_table("api_keys")
    op.drop_table("accounts")
