"""The exception inbox on PostgreSQL: its read side over real alerts, and two agents acting on one entry at the
same moment resolving it exactly once (the entry's row lock), with the carrier sim over HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from core.services import exceptions as ex
from core.services.customer_changes import request_change
from db import queries as q
from db import tables as t
from tests.conftest import ApiHarness
from tests.unit import test_shipping_stage as shipping_stage
from tests.unit.test_shipping_stage import NOWHERE, control, ready_to_ship, replay, ship, shipment_row

sim, receiver, carrier, calm_sim = (shipping_stage.sim, shipping_stage.receiver, shipping_stage.carrier,
                                    shipping_stage.calm_sim)


@pytest.fixture
def pg_api(pg_url, tmp_path) -> Iterator[ApiHarness]:
    harness = ApiHarness(pg_url, tmp_path)
    yield harness
    harness.services.engine.dispose()


def alert_id(api: ApiHarness, order_id: str, kind: str) -> int:
    with api.services.engine.connect() as conn:
        return conn.scalar(select(t.alerts.c.id).where(t.alerts.c.order_id == order_id, t.alerts.c.kind == kind))


@pytest.mark.integration
def test_the_inbox_lists_address_parcel_and_request_entries_oldest_first_with_counts(pg_api, sim, carrier, receiver):
    # given an address the carrier cannot find, then a parcel returned to sender, then a change request
    api = pg_api
    held = ready_to_ship(api, address=NOWHERE)
    assert ship(api, held, carrier) == "needs_address"
    back = ready_to_ship(api)
    control(sim, fates_by_reference={back: "return_to_sender"})
    ship(api, back, carrier)
    code = shipment_row(api, back).tracking_code
    replay(api, receiver, code, "return_to_sender")
    asked = ready_to_ship(api)
    svc = api.services
    request_change(asked, "Gift wrap it please", request_id="gift", uow=svc.uow(), now=svc.now())

    # when support opens the inbox
    found = q.exception_inbox(svc.engine, kinds=ex.KINDS)

    # then the three are there oldest first, each with its order, and the count per kind
    assert [(e["kind"], e["order_id"]) for e in found["entries"]] == [
        ("address", held), ("carrier", back), ("change_request", asked)]
    assert found["counts"] == {"address": 1, "carrier": 1, "notification": 0, "change_request": 1}
    parcel = found["entries"][1]
    assert (parcel["tracking_code"], parcel["shipment_status"], parcel["order_status"]) == (code, "returned",
                                                                                            "on_hold")
    assert found["entries"][0]["address"].postal_code == NOWHERE["postal_code"]
    assert found["entries"][2]["details"]["request"] == "Gift wrap it please"

    # and an entry resolved leaves the inbox
    ex.resolve(found["entries"][2]["id"], "wrapped", uow=svc.uow(), actor="sam", at=svc.now())
    assert q.exception_inbox(svc.engine, kinds=ex.KINDS)["counts"]["change_request"] == 0


@pytest.mark.integration
def test_two_agents_acting_on_one_entry_at_once_resolve_it_exactly_once(pg_api, sim, carrier, receiver):
    # given a returned parcel's entry, open on two agents' screens
    api = pg_api
    order_id = ready_to_ship(api)
    control(sim, fates_by_reference={order_id: "return_to_sender"})
    ship(api, order_id, carrier)
    replay(api, receiver, shipment_row(api, order_id).tracking_code, "return_to_sender")
    entry = alert_id(api, order_id, "carrier")
    svc = api.services
    start = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def agent(name: str, action) -> None:
        start.wait()
        try:
            outcomes[name] = action(entry, uow=svc.uow(), actor=name, at=svc.now())
        except ex.AlreadyResolved as late:
            outcomes[name] = late

    # when one reships and the other refunds at the same moment
    threads = [threading.Thread(target=agent, args=("sam", ex.reship)),
               threading.Thread(target=agent, args=("olive", lambda *a, **kw: ex.refund(*a, payments=api.payments,
                                                                                       **kw)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # then exactly one of them acted; the other was told it was already resolved, and nothing of theirs stuck
    winners = [name for name, result in outcomes.items() if isinstance(result, ex.Outcome)]
    assert len(winners) == 1 and len(outcomes) == 2
    with svc.engine.connect() as conn:
        lines = conn.scalar(select(func.count()).select_from(t.order_events).where(
            t.order_events.c.order_id == order_id, t.order_events.c.type.startswith("exception.")))
        audits = conn.execute(select(t.audit_log.c.actor, t.audit_log.c.action)
                              .where(t.audit_log.c.target_type == "alert")).all()
        status = conn.scalar(select(t.orders.c.status).where(t.orders.c.id == order_id))
    assert lines == 1 and [a.actor for a in audits] == winners
    if winners == ["sam"]:
        assert status == "ready_to_ship" and not api.payments.voided
    else:
        assert status == "failed"
