"""Idempotency keys per caller; indexes for the scrub on delete and the outbox guard.

Two callers' identical keys must never meet: the key's identity becomes
(caller, key), where caller is a hash of the credential's identity ('' when
authentication is off). Deleting a user clears the IBAN and tax code from
the stored answers of their creation, found by ``user_email``; creating a
user checks for a pending deletion of the email's interests, found by the
outbox payload's email.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PENDING_EMAIL = "(payload ->> 'email')"
PENDING_CONDITION = "method = 'DeleteUserInterests'"


def upgrade():
    op.add_column(
        "idempotency_keys",
        sa.Column("caller", sa.String(length=64), server_default="", nullable=False),
    )
    op.drop_constraint("idempotency_keys_pkey", "idempotency_keys", type_="primary")
    op.create_primary_key("idempotency_keys_pkey", "idempotency_keys", ["caller", "key"])
    op.create_index("ix_idempotency_keys_user_email", "idempotency_keys", ["user_email"])
    op.create_index(
        "ix_outbox_pending_email",
        "outbox",
        [sa.text(PENDING_EMAIL)],
        postgresql_where=sa.text(PENDING_CONDITION),
    )


def downgrade():
    op.drop_index("ix_outbox_pending_email", table_name="outbox")
    op.drop_index("ix_idempotency_keys_user_email", table_name="idempotency_keys")
    op.drop_constraint("idempotency_keys_pkey", "idempotency_keys", type_="primary")
    op.execute("DELETE FROM idempotency_keys WHERE caller <> ''")
    op.create_primary_key("idempotency_keys_pkey", "idempotency_keys", ["key"])
    op.drop_column("idempotency_keys", "caller")
