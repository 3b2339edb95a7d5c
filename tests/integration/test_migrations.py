"""Migrations build the same schema as the models, from empty, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import db
from db.migrate import upgrade
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
