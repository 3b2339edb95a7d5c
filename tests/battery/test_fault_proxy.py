"""Battery fault proxy at CI size: label buys and partner submits through the real worker, with a fault proxy in
front of the carrier sim and the partner sim injecting latency, resets, blackholes and lost answers."""

from __future__ import annotations

import pytest

from battery import fault_proxy
from tests.battery.conftest import assert_figures

pytestmark = [pytest.mark.battery, pytest.mark.integration, pytest.mark.timeout(300)]


def test_network_faults_between_workers_and_carrier_or_partner_duplicate_nothing_and_unknowns_are_asked_first(ctx):
    assert_figures(fault_proxy.fault_proxy(ctx))
