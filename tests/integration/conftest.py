"""Fixtures the integration tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import db
from tests.conftest import ApiHarness, settings_for


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request):
    """An engine on a migrated, seeded database, once on PostgreSQL and once on SQLite."""
    url = request.getfixturevalue("pg_url" if request.param == "postgresql" else "seeded_sqlite")
    db.configure(settings_for(url))
    engine = db.make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def harness(pg_url, tmp_path) -> Iterator[ApiHarness]:
    """The real API's services on a fresh PostgreSQL database (test_pii_lifecycle keeps its own, which also
    restores the test keys)."""
    h = ApiHarness(pg_url, tmp_path)
    yield h
    h.services.engine.dispose()
