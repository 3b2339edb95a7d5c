"""Fixtures the integration tests share."""

from __future__ import annotations

import pytest

import db
from tests.conftest import settings_for


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request):
    """An engine on a migrated, seeded database, once on PostgreSQL and once on SQLite."""
    url = request.getfixturevalue("pg_url" if request.param == "postgresql" else "seeded_sqlite")
    db.configure(settings_for(url))
    engine = db.make_engine(url)
    yield engine
    engine.dispose()
