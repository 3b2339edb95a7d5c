"""Fixtures the unit tests share."""

from __future__ import annotations

import pytest

import db
from tests.conftest import settings_for


@pytest.fixture
def engine(seeded_sqlite):
    """An engine on a migrated, seeded SQLite database, with the process configured for it."""
    db.configure(settings_for(seeded_sqlite))
    engine = db.make_engine(seeded_sqlite)
    yield engine
    engine.dispose()
