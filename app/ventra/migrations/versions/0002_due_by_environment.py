"""Index due deliveries by environment, as each environment claims its own.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX deliveries_due_by_env ON deliveries (env, next_attempt_at)"
        " WHERE status = 'pending';"
        "DROP INDEX deliveries_due;"
    )


def downgrade() -> None:
    op.execute(
        "CREATE INDEX deliveries_due ON deliveries (next_attempt_at)"
        " WHERE status = 'pending';"
        "DROP INDEX deliveries_due_by_env;"
    )
