"""Battery shipping faults at CI size: unverifiable addresses and a carrier 429 storm, through the real shipping
and notify workers against the carrier sim and the SMTP sink, on PG + Redis."""

from __future__ import annotations

import pytest

from battery import shipping_faults
from tests.battery.conftest import assert_figures

pytestmark = [pytest.mark.battery, pytest.mark.integration, pytest.mark.timeout(300)]


def test_fifty_orders_one_in_five_unverifiable_get_no_label_and_each_such_customer_is_asked_once(ctx):
    assert_figures(shipping_faults.invalid_addresses(ctx))


def test_a_carrier_429_storm_fails_no_order_and_the_limiter_keeps_429s_under_one_percent_after_warm_up(ctx):
    assert_figures(shipping_faults.carrier_429_storm(ctx))


def test_partners_down_for_ten_seconds_lose_and_duplicate_no_job_and_the_backlog_drains(ctx):
    assert_figures(shipping_faults.partner_outage(ctx))
