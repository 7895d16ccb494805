"""A check at most a day apart: a document stored with a rarer one is checked daily.

``check_seconds`` above 86400 is refused since this revision, and the
configuration in force is read back through the same rules, so a document
stored before with a rarer check would stop every check until the next
``PUT /sla/config``. It keeps working, checked once a day.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-08
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.execute(
        """
        UPDATE detector_state SET document = jsonb_set(document, '{check_seconds}', '86400')
        WHERE jsonb_typeof(document -> 'check_seconds') = 'number'
          AND (document ->> 'check_seconds')::numeric > 86400
        """
    )


def downgrade():
    # A daily check is valid before this revision too: nothing to undo.
    pass
