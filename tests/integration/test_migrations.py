"""Migrations build the same schema as the models, from empty, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, inspect, select, text

import db
from db import tables as t
from db.migrate import alembic_config, upgrade
from db.tables import metadata


def drift(url: str) -> list:
    engine = db.make_engine(url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    engine.dispose()
    return differences


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_autogenerate_finds_no_drift_between_models_and_migrations(backend, request, tmp_path):
    # given an empty database migrated to head
    url = f"sqlite:///{tmp_path / 'm.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    upgrade(url)
    # then every table of the design exists and the models match the migrated schema exactly
    engine = db.make_engine(url)
    assert set(inspect(engine).get_table_names()) >= set(metadata.tables)
    engine.dispose()
    assert drift(url) == []


PARENTS = (
    "INSERT INTO customers (id, name_enc, email_enc, email_hash, email_opt_out, sms_opt_out, created_at) "
    "VALUES ('cus_1', 'x', 'x', 'h', false, false, :t0)",
    "INSERT INTO orders (id, number, channel, external_id, customer_id, status, shipping_speed, shipping_address_enc, "
    "total_cents, currency, payment_authorization, priority, placed_at, status_changed_at, version) VALUES ('ord_1', "
    "'PR-1', 'storefront', 'SF-1', 'cus_1', 'qa', 'standard', 'x', 2500, 'USD', 'auth', 0, :t0, :t0, 1)",
    "INSERT INTO order_lines (id, order_id, line_no, sku, quantity, texts, template_key, template_version, "
    "unit_price_cents) VALUES ('lin_1', 'ord_1', 1, 'TEE', 3, '{}', 'tee', 1, 2500)",
)


def _at_revision_0009(backend: str, request, tmp_path) -> str:
    """A database at revision 0009, before jobs carried their start stamps."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'm.db'}"
        upgrade(url, "0009")
        return url
    url = request.getfixturevalue("pg_url")
    engine = db.make_engine(url)
    with engine.begin() as connection:
        config = alembic_config(url)
        config.attributes["connection"] = connection
        command.downgrade(config, "0009")
    engine.dispose()
    return url


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_job_start_stamps_are_backfilled_from_each_jobs_first_timeline_events(backend, request, tmp_path):
    # given two jobs of one order at 0009: one submitted and printed (no "printing" reported), one printing
    # then printed, and a pending third; their timeline events carry the job id in the payload
    url = _at_revision_0009(backend, request, tmp_path)
    t0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    engine = db.make_engine(url)
    with engine.connect() as conn:
        for statement in PARENTS:  # the order and line the jobs belong to (ciphertext columns hold a stand-in)
            conn.execute(text(statement), {"t0": t0})
        for job_id, status in (("job_a", "printed"), ("job_b", "qa_passed"), ("job_c", "pending")):
            conn.execute(insert(t.print_jobs).values(id=job_id, order_id="ord_1", line_id="lin_1", unit_index=0,
                                                     status=status, attempt=1, priority=0.0, created_at=t0,
                                                     status_changed_at=t0, version=1))
        events = [("job_a", "job.submitted", 1), ("job_b", "job.submitted", 2), ("job_a", "job.printed", 5),
                  ("job_b", "job.printing", 3), ("job_b", "job.printed", 4), ("job_c", "job.batched", 1)]
        for n, (job_id, kind, hours) in enumerate(events):
            conn.execute(insert(t.order_events).values(order_id="ord_1", at=t0 + timedelta(hours=hours), type=kind,
                                                       source="worker:production", payload={"entity_id": job_id},
                                                       dedupe_key=f"k{n}"))
        conn.commit()
    engine.dispose()
    # when the database is migrated to head
    upgrade(url)
    # then each job carries its first submission and its first start, and the unsubmitted one neither
    engine = db.make_engine(url)
    with engine.connect() as conn:
        rows = {r.id: (r.submitted_at, r.started_at) for r in conn.execute(
            select(t.print_jobs.c.id, t.print_jobs.c.submitted_at, t.print_jobs.c.started_at))}
    engine.dispose()
    assert rows == {"job_a": (t0 + timedelta(hours=1), t0 + timedelta(hours=5)),
                    "job_b": (t0 + timedelta(hours=2), t0 + timedelta(hours=3)),
                    "job_c": (None, None)}
