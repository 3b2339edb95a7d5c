"""Battery check 7 at CI size: 100 customers with canary strings order through the API processes; no canary in
plain text in the PostgreSQL dump, the processes' logs, or any Redis key (queued messages included)."""

from __future__ import annotations

import pytest

from battery import pii
from tests.battery.conftest import assert_figures

pytestmark = [pytest.mark.battery, pytest.mark.integration, pytest.mark.timeout(300)]


def test_customer_canaries_are_readable_through_the_app_and_nowhere_in_plain_text(ctx):
    assert_figures(pii.pii_canaries(ctx))
