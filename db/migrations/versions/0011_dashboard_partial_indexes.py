"""dashboard partial indexes: open orders by state, jobs at partners, unbatched jobs in queue order

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27 18:25:00.000000
"""

from alembic import op
import sqlalchemy as sa

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

UNBATCHED = sa.text("status = 'pending'")
AT_PARTNER = sa.text("status IN ('submitted', 'queued', 'printing')")
OPEN_ORDER = sa.text("status NOT IN ('delivered', 'cancelled', 'failed')")
GROUP = ['partner_id', 'product_type', 'print_method', 'region']


def upgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index('ix_orders_open_status', ['status'], unique=False, postgresql_where=OPEN_ORDER,
                              sqlite_where=OPEN_ORDER)
    with op.batch_alter_table('print_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_print_jobs_at_partner', ['partner_id', 'print_method', 'submitted_at', 'status'],
                              unique=False, postgresql_where=AT_PARTNER, sqlite_where=AT_PARTNER)
        # Queue order is priority high to low, then id: an index in that order reads only the rows shown.
        batch_op.drop_index('ix_print_jobs_unbatched_queue')
        batch_op.create_index('ix_print_jobs_unbatched_queue', [*GROUP, sa.text('priority DESC'), 'id'],
                              unique=False, postgresql_where=UNBATCHED, sqlite_where=UNBATCHED)


def downgrade() -> None:
    with op.batch_alter_table('print_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_print_jobs_unbatched_queue')
        batch_op.create_index('ix_print_jobs_unbatched_queue', [*GROUP, 'priority', 'id'], unique=False,
                              postgresql_where=UNBATCHED, sqlite_where=UNBATCHED)
        batch_op.drop_index('ix_print_jobs_at_partner')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index('ix_orders_open_status')
