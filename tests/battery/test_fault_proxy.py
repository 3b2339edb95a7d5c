"""Battery fault proxy at CI size: shipment creates, label buys and partner submits through the real worker, with a
fault proxy in front of the carrier sim and the partner sim injecting latency, resets, blackholes and lost answers;
and the figures' own counting, on made-up ledgers and proxy records."""

from __future__ import annotations

import json

import pytest

from battery import fault_proxy
from battery.framework import Figure
from core.states import OrderStatus
from sims.faultproxy import Exchange, Mode
from tests.battery.conftest import assert_figures

ORDER = "ord_0001"


@pytest.mark.battery
@pytest.mark.integration
@pytest.mark.timeout(300)
def test_network_faults_between_workers_and_carrier_or_partner_duplicate_nothing_and_unknowns_are_asked_first(ctx):
    figures = fault_proxy.fault_proxy(ctx)
    assert_figures(figures)
    assert figure(figures, "carrier shipments left unbought").passed
    assert figure(figures, "shipment creates left without an answer").passed


# ---- the counting, without the world -----------------------------------------------------------------------------


def figure(figures: list[Figure], start: str) -> Figure:
    [found] = [f for f in figures if f.figure.startswith(start)]
    return found


def create(seq: int, *, fault: str = "", delivered: bool = True) -> Exchange:
    body = json.dumps({"shipment": {"to_address": {"zip": "10118"}, "reference": ORDER}})
    return Exchange(seq=seq, at=float(seq), method="POST", target="/v2/shipments", body=body, fault=fault,
                    delivered=delivered)


def lookup(seq: int) -> Exchange:
    return Exchange(seq=seq, at=float(seq), method="GET", target=f"/v2/shipments/{ORDER}", body="", delivered=True)


def figures_for(carrier_log: list[Exchange], *, shipments: int = 1) -> list[Figure]:
    carrier_ledger = {"purchases_by_reference": {ORDER: 1}, "shipments_by_reference": {ORDER: shipments},
                      "labels_bought": 1, "buys_refused_postage_exists": 0, "double_bought_references": [],
                      "shipments_created": shipments, "shipments_found_by_reference": 1}
    partner_ledger = {"by_external_id": {}, "duplicate_creates": 0, "repeat_submits": 0}
    return fault_proxy._figures("fault-proxy", labels=1, label_orders=[ORDER],
                                states={ORDER: (OrderStatus.LABEL_CREATED, None)}, carrier_ledger=carrier_ledger,
                                partner_ledger=partner_ledger, db_jobs={}, carrier_log=carrier_log, partner_log=[],
                                dead=0, took=1.0)


def test_a_lost_create_followed_by_a_lookup_by_reference_passes_the_create_figure():
    figures = figures_for([create(0, fault=Mode.LOST_RESPONSE.value, delivered=False), lookup(1)])
    assert figure(figures, "shipment creates left without an answer").passed
    assert figure(figures, "carrier shipments left unbought").passed


@pytest.mark.parametrize("fault", [Mode.LOST_RESPONSE, Mode.RESET, Mode.BLACKHOLE])
def test_a_create_sent_again_blindly_after_an_unknown_outcome_fails_the_create_figure(fault):
    figures = figures_for([create(0, fault=fault.value, delivered=False), create(1)], shipments=2)
    assert not figure(figures, "shipment creates left without an answer").passed
    assert "#0 POST /v2/shipments" in figure(figures, "shipment creates left without an answer").figure


def test_a_second_carrier_shipment_for_an_order_fails_the_unbought_figure():
    figures = figures_for([create(0), create(1)], shipments=2)
    unbought = figure(figures, "carrier shipments left unbought")
    assert not unbought.passed and unbought.figure.endswith(": 1")


def test_no_create_struck_is_not_a_pass_for_the_create_figure():
    assert not figure(figures_for([create(0)]), "shipment creates left without an answer").passed
