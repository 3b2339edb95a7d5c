"""Battery checks 1 and 2 at CI size: the webhook storm and the forgeries, over real HTTP on PG + Redis."""

from __future__ import annotations

import pytest

from battery import webhooks
from tests.battery.conftest import assert_figures

pytestmark = [pytest.mark.battery, pytest.mark.integration, pytest.mark.timeout(240)]


def test_two_hundred_events_sent_five_times_shuffled_and_late_have_exactly_one_effect_each(ctx):
    assert_figures(webhooks.webhook_storm(ctx))


def test_three_hundred_forged_tampered_unsigned_or_replayed_webhooks_are_refused_with_no_effect(ctx):
    # a webhook without its signature header is refused by FastAPI's validation (422), logged by api/problems.py
    assert_figures(webhooks.forged_webhooks(ctx))
