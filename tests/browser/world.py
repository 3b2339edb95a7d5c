"""The data the browser flows start from, made by sending real orders through the running pipeline.

Nothing is written behind the pipeline's back except the production rules, which are stored through the same
service the batch builder's "Apply" calls (an ops manager slowing batch release down before the session).

1. Five mug orders to London: the first prints of a new template version at a new partner, so the real QA
   stage sends each one to a human (needs review).
2. Two more of the same: past the first-prints rule, they pass QA automatically, get a label bought from the
   carrier sim and so a tracking number.
3. Batch release slowed to a day; two more London orders wait in an open batch (the ops manager releases
   it), and one to the US waits in a batch of its own before the production gate (support cancels it).
"""

from __future__ import annotations

import io
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
from PIL import Image
from sqlalchemy import Engine, func, select

import db
from core.services import batches
from core.states import InspectionStatus, JobStatus, OrderStatus
from db import tables as t
from db.seed import demo_logins
from tests.conftest import settings_for
from tests.e2e.conftest import System

SKU = "MUG-SUB-11OZ-WHT"
LONDON = {"name": "Ada Lovelace", "line1": "12 Marylebone Rd", "city": "London", "region": "LND",
          "postal_code": "NW1 5LR", "country": "GB"}
BOSTON = {"name": "Grace Hopper", "line1": "1 Broadway", "city": "Cambridge", "region": "MA",
          "postal_code": "02142", "country": "US"}
FIRST_PRINTS_REVIEWED = 5
"""core.sampling.SpotCheckPolicy.first_n_new: this many first prints of a template version go to a human."""
STAFF = {user["role"]: user for user in demo_logins()}
"""The seeded demo staff (`python -m cli demo-logins`), by role."""


def artwork_png(colour: tuple[int, int, int]) -> bytes:
    """A small two-tone design (a flat image would leave QA's registration nothing to lock onto)."""
    image = Image.new("RGB", (1200, 600), colour)
    for x in range(0, 1200, 150):
        image.paste((255 - colour[0], 255 - colour[1], 255 - colour[2]), (x, 100, x + 60, 500))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@dataclass
class World:
    system: System
    url: str
    engine: Engine
    review_orders: list[str] = field(default_factory=list)
    """Order numbers whose inspection waits for a QA inspector."""
    tracked: dict[str, str] = field(default_factory=dict)
    """Tracking code → order number, for orders that passed QA and have a label."""
    batch_id: str = ""
    """An open batch (London mugs) that will not go to its partner until someone releases it."""
    batch_orders: list[str] = field(default_factory=list)
    cancellable: str = ""
    """The number of an order waiting before the production gate, alone in its batch."""

    def scalar(self, statement):
        with self.engine.connect() as conn:
            return conn.scalar(statement)

    def rows(self, statement) -> list:
        with self.engine.connect() as conn:
            return list(conn.execute(statement))

    def wait_for(self, what: str, check, timeout: float = 90.0):
        """Poll `check()` until it returns something truthy; fail with `what` and the logs' folder otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            self.system.assert_alive()
            time.sleep(0.5)
        raise AssertionError(f"{what}: not within {timeout:.0f}s; process logs in {self.system.logs}")

    def order_status(self, number: str) -> str:
        return self.scalar(select(t.orders.c.status).where(t.orders.c.number == number))

    def close(self) -> None:
        self.engine.dispose()


def place_order(api_url: str, address: dict, *, colour: tuple[int, int, int], name: str) -> dict:
    """Upload artwork and place a one-mug order over the API, as the storefront would."""
    with httpx.Client(base_url=api_url, timeout=30) as client:
        art = client.post("/v1/artwork", files={"file": ("art.png", artwork_png(colour))}, data={"sku": SKU})
        assert art.status_code == 201, art.text
        body = {"external_id": f"BT-{uuid.uuid4().hex[:10]}", "channel": "storefront",
                "customer": {"name": address["name"], "email": f"{name.lower()}@example.com",
                             "phone": "+44 20 7946 0958"},
                "shipping_address": address, "shipping_speed": "standard",
                "lines": [{"sku": SKU, "quantity": 1, "artwork_id": art.json()["id"], "texts": {"name": name}}]}
        order = client.post("/v1/orders", json=body)
        assert order.status_code == 201, order.text
        return order.json()


def _inspections(world: World) -> int:
    return world.scalar(select(func.count()).select_from(t.inspections))


def _slow_batch_release(world: World) -> None:
    """Store rules whose batches wait a day to fill, through the batch builder's own service."""
    settings = settings_for(world.url)
    uow = db.SqlUnitOfWork(db.make_session_factory(world.engine))
    rules = batches.load_production_rules(uow, defaults=batches.defaults_from(settings))
    slow = batches.ProductionRules(routing=rules.routing, priority=rules.priority, calendar=rules.calendar,
                                   batching=type(rules.batching)(
                                       max_wait=timedelta(days=1), min_size=rules.batching.min_size,
                                       max_size=rules.batching.max_size,
                                       capacity_window=rules.batching.capacity_window))
    batches.save_production_rules(slow, uow=uow, actor="test-setup", at=datetime.now(UTC),
                                  new_id=lambda prefix: f"{prefix}_{uuid.uuid4().hex[:12]}",
                                  defaults=batches.defaults_from(settings))


def build_world(system: System, url: str) -> World:
    settings = settings_for(url)
    db.configure(settings)
    world = World(system=system, url=url, engine=db.make_engine(url))
    o, j, i, s = t.orders, t.print_jobs, t.inspections, t.shipments

    # 1. first prints of the mug template: every one of them waits for a human
    for n in range(FIRST_PRINTS_REVIEWED):
        place_order(system.api_url, LONDON, colour=(40 + 30 * n, 90, 200), name=f"Review{n}")
    world.wait_for(f"{FIRST_PRINTS_REVIEWED} inspections by the QA stage",
                   lambda: _inspections(world) >= FIRST_PRINTS_REVIEWED)
    # 2. later prints pass QA on their own, get a label and a tracking number
    passing = [place_order(system.api_url, LONDON, colour=(200, 60 + 40 * n, 40), name=f"Passing{n}")
               for n in range(2)]
    # 3. once every job so far is at its partner, slow batch release down and leave orders before the gate
    world.wait_for("every job so far at its partner", lambda: world.scalar(
        select(func.count()).select_from(j).where(j.c.status.not_in([JobStatus.PENDING, JobStatus.BATCHED])))
        == FIRST_PRINTS_REVIEWED + len(passing))
    _slow_batch_release(world)
    batched = [place_order(system.api_url, LONDON, colour=(90, 160, 60 + 50 * n), name=f"Batch{n}")["number"]
               for n in range(2)]
    world.batch_orders = batched
    world.cancellable = place_order(system.api_url, BOSTON, colour=(120, 30, 160), name="Cancel")["number"]
    waiting = [*batched, world.cancellable]

    world.wait_for("the later prints inspected too",
                   lambda: _inspections(world) >= FIRST_PRINTS_REVIEWED + len(passing))
    world.tracked = dict(world.wait_for("a tracking number for an order that passed QA", lambda: [
        (code, number) for code, number in world.rows(
            select(s.c.tracking_code, o.c.number).join(o, o.c.id == s.c.order_id)
            .where(o.c.number.in_([p["number"] for p in passing]), s.c.tracking_code.is_not(None)))]))

    def in_review():
        numbers = [number for (number,) in world.rows(select(o.c.number).join(i, i.c.order_id == o.c.id)
                                                      .where(i.c.status == InspectionStatus.NEEDS_REVIEW)
                                                      .order_by(i.c.created_at))]
        return numbers if len(numbers) >= 2 else None

    world.review_orders = world.wait_for("two first prints or more waiting in the QA queue", in_review, timeout=5)

    def all_batched():
        rows = world.rows(select(o.c.number, j.c.batch_id, o.c.status).join(j, j.c.order_id == o.c.id)
                          .where(o.c.number.in_(waiting), j.c.status == JobStatus.BATCHED))
        return rows if len(rows) == len(waiting) else None

    rows = world.wait_for("the last three orders batched and waiting", all_batched)
    by_number = {number: (batch_id, status) for number, batch_id, status in rows}
    assert {status for _, status in by_number.values()} == {OrderStatus.READY_FOR_PRODUCTION}, by_number
    assert by_number[batched[0]][0] == by_number[batched[1]][0] != by_number[world.cancellable][0], by_number
    world.batch_id = by_number[batched[0]][0]
    return world
