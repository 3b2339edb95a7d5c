"""Battery check 3 at CI size: the hypothesis state machine of the order lifecycle (12 examples × 25 steps,
about a minute here; `python -m battery lifecycle-model` runs 500 × 50)."""

from __future__ import annotations

import pytest

from battery import lifecycle
from battery.framework import Context
from tests.battery.conftest import assert_figures

pytestmark = [pytest.mark.battery, pytest.mark.timeout(240)]


def test_no_sequence_of_redeliveries_duplicates_late_events_reprints_and_cancels_breaks_an_invariant(tmp_path):
    # SQLite with fakes for the outside world: no PostgreSQL or Redis needed
    ctx = Context(pg_url="", redis_url="", workdir=tmp_path, size="ci")
    assert_figures(lifecycle.lifecycle_model(ctx))
