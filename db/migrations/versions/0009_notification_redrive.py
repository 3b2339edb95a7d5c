"""notification re-drive: when the reconciler last re-queued a message whose queue entry was lost

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 14:55:00.000000
"""

from alembic import op
import sqlalchemy as sa

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('redriven_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_notifications_status_created_at', ['status', 'created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index('ix_notifications_status_created_at')
        batch_op.drop_column('redriven_at')
