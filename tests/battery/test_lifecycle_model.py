"""Battery check 3: the hypothesis state machine of the order lifecycle. In CI (`CI=true`) at the issue's size,
500 examples × 50 steps (525 examples, 28,584 steps, about 12 minutes at load 20 here); elsewhere 40 × 40, about
a minute, so the default run stays short. `python -m battery lifecycle-model --size battery` runs the CI size."""

from __future__ import annotations

import pytest

from battery import lifecycle
from battery.framework import Context
from tests.battery.conftest import assert_figures
from tests.conftest import IN_CI

pytestmark = [pytest.mark.battery, pytest.mark.timeout(2400 if IN_CI else 240)]


def test_no_sequence_of_redeliveries_duplicates_late_events_reprints_and_cancels_breaks_an_invariant(tmp_path):
    # SQLite with fakes for the outside world: no PostgreSQL or Redis needed
    ctx = Context(pg_url="", redis_url="", workdir=tmp_path, size="battery" if IN_CI else "ci")
    assert_figures(lifecycle.lifecycle_model(ctx))
