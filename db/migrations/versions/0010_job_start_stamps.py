"""job start stamps: when each job reached its partner and first started printing, backfilled from the timeline

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27 18:00:00.000000
"""

from alembic import op
import sqlalchemy as sa

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    with op.batch_alter_table('print_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('started_at', sa.DateTime(timezone=True), nullable=True))
    _backfill()
    with op.batch_alter_table('print_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_print_jobs_submitted_at_partner_id_started_at',
                              ['submitted_at', 'partner_id', 'started_at'], unique=False)
        batch_op.create_index('ix_print_jobs_unbatched_queue',
                              ['partner_id', 'product_type', 'print_method', 'region', 'priority', 'id'],
                              unique=False, postgresql_where=PENDING, sqlite_where=PENDING)


def _backfill() -> None:
    """Each job's first job.submitted, and first job.printing or job.printed, from its order's timeline."""
    jobs = sa.table('print_jobs', sa.column('id', sa.String), sa.column('order_id', sa.String),
                    sa.column('status', sa.String), sa.column('submitted_at', sa.DateTime(timezone=True)),
                    sa.column('started_at', sa.DateTime(timezone=True)))
    events = sa.table('order_events', sa.column('order_id', sa.String), sa.column('at', sa.DateTime(timezone=True)),
                      sa.column('type', sa.String), sa.column('payload', sa.JSON))
    past_gate = ('submitted', 'queued', 'printing', 'printed', 'qa_passed', 'qa_failed', 'cancelled', 'failed')
    for column, types in (('submitted_at', ('job.submitted',)), ('started_at', ('job.printing', 'job.printed'))):
        first = (sa.select(sa.func.min(events.c.at))
                 .where(events.c.order_id == jobs.c.order_id, events.c.type.in_(types),
                        events.c.payload['entity_id'].as_string() == jobs.c.id)
                 .scalar_subquery())
        op.execute(jobs.update().where(jobs.c.status.in_(past_gate)).values({column: first}))


def downgrade() -> None:
    with op.batch_alter_table('print_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_print_jobs_unbatched_queue')
        batch_op.drop_index('ix_print_jobs_submitted_at_partner_id_started_at')
        batch_op.drop_column('started_at')
        batch_op.drop_column('submitted_at')
