"""Idempotency keys of deleted users keep nothing of them.

Deleting a user now clears, in the same transaction, what every stored key
of theirs holds of them: the user in a create's stored answer, the email
in a delete's path and in ``user_email``. Keys stored before that change,
by deletes already committed, would hold it until they expire (a day);
this clears them the same way: every key whose ``user_email`` names no
user any more.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

FORGET_DELETED_USERS = """
UPDATE idempotency_keys SET
    response_body = CASE WHEN response_code = 201
        THEN (response_body::jsonb || '{"user": null}')::text ELSE response_body END,
    request_path = CASE WHEN request_method = 'DELETE'
        THEN '/users/{email}' ELSE request_path END,
    user_email = NULL
WHERE user_email IS NOT NULL
    AND NOT EXISTS (SELECT FROM users WHERE users.email = idempotency_keys.user_email)
"""


def upgrade():
    op.execute(FORGET_DELETED_USERS)


def downgrade():
    # Nothing to undo in the schema, and what was cleared cannot come back.
    pass
