"""A hypothesis state machine of the order lifecycle over the real services on SQLite, with fakes for the outside
(payments, the print partner, the carrier): orders placed, rendered, routed, batched and submitted — each step
possibly redelivered — partner and carrier webhooks duplicated or late, QA verdicts with reprints, labels bought
twice over, cancels at any moment. After every step: ≤ 1 partner job per job attempt, ≤ 1 label per order, legal
transitions only and never backwards, refunds (voids) ≤ charges (authorisations), nothing made for a cancelled
order.
"""

from __future__ import annotations

import itertools
import shutil
import time
import traceback
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from sqlalchemy import select

from adapters.partners import PartnerJob
from battery.framework import Context, Figure
from battery.webhooks import backwards_and_illegal, status_changes
from core.commands import Address
from core.errors import PressroomError
from core.services.customer_changes import cancel_order
from core.services.production import (
    ProductionRules,
    apply_partner_event,
    batch_ready_jobs,
    route_order,
    submit_batch,
)
from core.services.qa import QaRules, fail_job, pass_job
from core.services.render import render_order
from core.services.shipping import (
    CarrierShipment,
    Purchase,
    Rate,
    ShipmentNotPurchased,
    Verification,
    apply_carrier_event,
    buy_label,
)
from core.states import BatchStatus, Entity, JobStatus
from db import tables as t
from tests.conftest import ApiHarness, migrated_and_seeded

SHIP_FROM = Address(name="Pressroom Fulfilment", line1="55 Water St", city="Brooklyn", region="NY",
                    postal_code="11201", country="US")
PARTNER_STATUSES = ("queued", "printing", "printed", "ready_for_shipment", "cancelled")
CARRIER_STATUSES = ("pre_transit", "in_transit", "out_for_delivery", "delivered", "return_to_sender")


class FakePartner:
    """A partner that creates a new job on every submit (no dedupe of its own), so a second submit shows."""

    def __init__(self) -> None:
        self.creates: Counter[str] = Counter()
        self._ids = itertools.count(1)

    def submit_job(self, endpoint, body) -> PartnerJob:
        self.creates[body["external_id"]] += 1
        return PartnerJob(id=f"pj_{next(self._ids)}", external_id=body["external_id"], status="received",
                          created=True)


class FakeCarrier:
    """EasyPost as the Carrier port sees it: a second buy of a shipment answers with its purchase (as EasyPost
    does), but a second shipment for the same order would be bought again — and counted."""

    def __init__(self) -> None:
        self.shipments: dict[str, CarrierShipment] = {}
        self.reference: dict[str, str] = {}
        self.purchases: Counter[str] = Counter()  # per reference (our order id)
        self._ids = itertools.count(1)

    def verify_address(self, address: Address) -> Verification:
        return Verification(ok=True)

    def create_shipment(self, to, from_, parcel, reference: str) -> CarrierShipment:
        n = next(self._ids)
        rates = (Rate(id=f"rate_{n}_std", carrier="USPS", service="Priority", rate_cents=790, delivery_days=3),
                 Rate(id=f"rate_{n}_exp", carrier="USPS", service="Express", rate_cents=2690, delivery_days=1))
        shipment = CarrierShipment(id=f"shp_{n}", rates=rates)
        self.shipments[shipment.id], self.reference[shipment.id] = shipment, reference
        return shipment

    def buy(self, shipment_id: str, rate_id: str) -> Purchase:
        shipment = self.shipments[shipment_id]
        if shipment.purchase is None:
            rate = next(r for r in shipment.rates if r.id == rate_id)
            purchase = Purchase(tracking_code=f"9400{shipment_id}", label_url=f"https://labels.example/{shipment_id}",
                                carrier=rate.carrier, service=rate.service, rate_cents=rate.rate_cents)
            self.shipments[shipment_id] = CarrierShipment(id=shipment_id, rates=shipment.rates, purchase=purchase)
            self.purchases[self.reference[shipment_id]] += 1
        return self.shipments[shipment_id].purchase

    def retrieve(self, shipment_id: str) -> CarrierShipment:
        return self.shipments[shipment_id]

    def fetch_label(self, url: str) -> bytes:
        return b"%PDF-1.4 battery label " + url.encode()


class Template:
    """A seeded SQLite database in which one order was already rendered, so each example's orders (same artwork,
    same text) hit the render cache; every example starts from a copy of it."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "lifecycle"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "template.db"
        migrated_and_seeded(f"sqlite:///{self.path}")
        harness = ApiHarness(f"sqlite:///{self.path}", self.dir)
        self.artwork_id = harness.upload()["id"]
        order = harness.client.post("/v1/orders", json=harness.order_body(self.artwork_id)).json()
        svc = harness.services
        assert render_order(order["id"], uow=svc.uow(), store=svc.store, now=svc.now,
                            clock=time.perf_counter) == "rendered"
        svc.engine.dispose()

    def copy(self) -> str:
        target = self.dir / f"ex-{uuid.uuid4().hex[:8]}.db"
        shutil.copy(self.path, target)
        return f"sqlite:///{target}"


class Stats:
    examples = 0
    steps = 0
    outcomes: Counter = Counter()


class OrderLifecycle(RuleBasedStateMachine):
    template: Template  # set by the check before running

    def __init__(self) -> None:
        super().__init__()
        Stats.examples += 1
        self.url = self.template.copy()
        self.h = ApiHarness(self.url, self.template.dir)
        self.svc = self.h.services
        self.partner, self.carrier = FakePartner(), FakeCarrier()
        self.now = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
        self.rules = ProductionRules()
        self.orders: list[str] = []
        self.cancelled: set[str] = set()
        self.events: list[tuple[str, str, bytes]] = []  # (source, event id, body) already delivered once

    def teardown(self) -> None:
        self.svc.engine.dispose()
        Path(self.url.removeprefix("sqlite:///")).unlink(missing_ok=True)

    def _tick(self, seconds: float = 7) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now

    def _clock(self) -> datetime:
        return self._tick(1)

    def _rows(self, query):
        with self.svc.engine.connect() as conn:
            return conn.execute(query).all()

    def _note(self, what: str, outcome: str) -> None:
        Stats.steps += 1
        Stats.outcomes[f"{what}:{outcome}"] += 1

    # ---- the outside world acting ------------------------------------------------------------------------

    @initialize()
    def first_order(self) -> None:
        self.place(quantity=1)

    @rule(quantity=st.integers(1, 2))
    def place(self, quantity: int) -> None:
        body = self.h.order_body(self.template.artwork_id)
        body["lines"][0]["quantity"] = quantity
        response = self.h.client.post("/v1/orders", json=body)
        assert response.status_code == 201, response.text
        self.orders.append(response.json()["id"])
        self._note("place", "accepted")

    @rule(data=st.data())
    def render(self, data) -> None:
        order_id = data.draw(st.sampled_from(self.orders))
        self._note("render", render_order(order_id, uow=self.svc.uow(), store=self.svc.store, now=self._clock,
                                          clock=time.perf_counter))

    @rule(data=st.data())
    def route(self, data) -> None:
        order_id = data.draw(st.sampled_from(self.orders))
        self._note("route", route_order(order_id, uow=self.svc.uow(), now=self._tick(), rules=self.rules))

    @rule(wait_minutes=st.sampled_from([0, 31]))
    def batch(self, wait_minutes: int) -> None:
        released = batch_ready_jobs(self.svc.uow(), now=self._tick(wait_minutes * 60), rules=self.rules,
                                    new_id=self.svc.ids.new)
        self._note("batch", f"released {min(len(released), 2)}")

    @rule(data=st.data())
    def submit(self, data) -> None:
        """The SubmitBatch message, delivered for any released or submitted batch, any number of times."""
        b = t.batches
        batches = [r.id for r in self._rows(select(b.c.id).where(
            b.c.status.in_([BatchStatus.RELEASED, BatchStatus.SUBMITTED])).order_by(b.c.id))]
        if not batches:
            return self._note("submit", "nothing released")
        outcome = submit_batch(data.draw(st.sampled_from(batches)), uow=self.svc.uow(), client=self.partner,
                               endpoint_for=lambda pid: pid, file_url=lambda asset: f"https://files/{asset}",
                               callback_url=lambda pid: f"https://api/webhooks/partners/{pid}", now=self._clock)
        self._note("submit", outcome)

    @rule(data=st.data(), status=st.sampled_from(PARTNER_STATUSES), again=st.booleans())
    def partner_webhook(self, data, status: str, again: bool) -> None:
        """A partner event for a job at the partner: new, or a redelivery of an earlier event (late or repeated);
        its message may be applied twice."""
        if again and any(source.startswith("partner:") for source, _, _ in self.events):
            source, event_id, body = data.draw(st.sampled_from([e for e in self.events
                                                                if e[0].startswith("partner:")]))
        else:
            j = t.print_jobs
            jobs = self._rows(select(j.c.id, j.c.partner_id, j.c.partner_job_id)
                              .where(j.c.partner_job_id.is_not(None)).order_by(j.c.id))
            if not jobs:
                return self._note("partner webhook", "no job at a partner")
            job = data.draw(st.sampled_from(jobs))
            event_id = f"evt_{uuid.uuid4().hex[:16]}"
            body = (f'{{"event_id":"{event_id}","occurred_at":"{self.now.isoformat()}","type":"job.status",'
                    f'"job":{{"id":"{job.partner_job_id}","external_id":"{job.id}","status":"{status}",'
                    f'"photo_url":null}}}}').encode()
            source = f"partner:{job.partner_id}"
            self.events.append((source, event_id, body))
        self._deliver(source, event_id, body, data, apply=apply_partner_event, what="partner webhook")

    @rule(data=st.data(), status=st.sampled_from(CARRIER_STATUSES), again=st.booleans())
    def carrier_webhook(self, data, status: str, again: bool) -> None:
        if again and any(source == "carrier:easypost" for source, _, _ in self.events):
            source, event_id, body = data.draw(st.sampled_from([e for e in self.events
                                                                if e[0] == "carrier:easypost"]))
        else:
            s = t.shipments
            shipments = self._rows(select(s.c.carrier_shipment_id, s.c.tracking_code)
                                   .where(s.c.carrier_shipment_id.is_not(None)).order_by(s.c.id))
            if not shipments:
                return self._note("carrier webhook", "no shipment")
            shipment = data.draw(st.sampled_from(shipments))
            event_id = f"evt_{uuid.uuid4().hex[:16]}"
            code = shipment.tracking_code or ""
            body = (f'{{"id":"{event_id}","object":"Event","description":"tracker.updated","result":{{'
                    f'"object":"Tracker","tracking_code":"{code}","shipment_id":"{shipment.carrier_shipment_id}",'
                    f'"status":"{status}","status_detail":"{status}","tracking_details":[]}}}}').encode()
            source = "carrier:easypost"
            self.events.append((source, event_id, body))
        self._deliver(source, event_id, body, data, apply=apply_carrier_event, what="carrier webhook")

    def _deliver(self, source: str, event_id: str, body: bytes, data, *, apply, what: str) -> None:
        with self.svc.uow() as uow:
            inbox_id = uow.inbox.receive(source=source, event_id=event_id, topic="battery", body=body.decode(),
                                         at=self._tick(1))
            uow.commit()
        if inbox_id is None:  # the API answers "duplicate"; the earlier message may still be redelivered
            w = t.webhook_inbox
            inbox_id = self._rows(select(w.c.id).where(w.c.source == source, w.c.event_id == event_id))[0].id
        for _ in range(data.draw(st.integers(1, 2), label="applied times")):
            try:
                self._note(what, apply(inbox_id, uow=self.svc.uow(), now=self._tick(1)))
            except ShipmentNotPurchased:
                self._note(what, "retry: not purchased yet")

    @rule(data=st.data(), verdict=st.sampled_from(["pass", "fail"]))
    def qa_verdict(self, data, verdict: str) -> None:
        j = t.print_jobs
        printed = [r.id for r in self._rows(select(j.c.id).where(j.c.status == JobStatus.PRINTED).order_by(j.c.id))]
        if not printed:
            return self._note("qa", "nothing printed")
        job_id = data.draw(st.sampled_from(printed))
        with self.svc.uow() as uow:
            job = uow.jobs.get(job_id, lock=True)
            at = self._tick()
            if verdict == "pass":
                pass_job(job, uow=uow, at=at, source="worker:qa")
            else:
                fail_job(job, reason="misregistration", uow=uow, at=at, source="worker:qa",
                         new_id=self.svc.ids.new, rules=QaRules())
            uow.commit()
        self._note("qa", verdict)

    @rule(data=st.data())
    def buy(self, data) -> None:
        order_id = data.draw(st.sampled_from(self.orders))
        self._note("buy label", buy_label(order_id, uow=self.svc.uow(), carrier=self.carrier, store=self.svc.store,
                                          now=self._clock, new_id=self.svc.ids.new, ship_from=SHIP_FROM))

    @rule(data=st.data(), now=st.integers(0, 3))
    def cancel(self, data, now: int) -> None:
        """A customer or support cancels (a quarter of the times this rule is picked, so orders get far)."""
        if now:
            return self._note("cancel", "not now")
        order_id = data.draw(st.sampled_from(self.orders))
        try:
            outcome = cancel_order(order_id, by="customer", reason="changed my mind", uow=self.svc.uow(),
                                   payments=self.h.payments, now=self._tick())
        except PressroomError as refused:
            return self._note("cancel", f"refused ({refused.code})")
        self.cancelled.add(order_id)
        self._note("cancel", outcome)

    @rule(data=st.data(), stages=st.integers(1, 4))
    def progress(self, data, stages: int) -> None:
        """Take one order along the happy path for a few stages, as the workers and the outside world would, so
        that examples reach production, QA, labels and scans; the other rules add the redeliveries, duplicates,
        late events, reprints and cancels around it."""
        order_id = data.draw(st.sampled_from(self.orders))
        for _ in range(stages):
            self._next_stage(order_id, data)

    @rule(data=st.data(), stages=st.integers(1, 4))
    def progress_another(self, data, stages: int) -> None:
        """The same as `progress`: listed twice so that the happy path is picked as often as the disruptions."""
        self.progress(data, stages)

    def _next_stage(self, order_id: str, data) -> None:
        o, j, s = t.orders, t.print_jobs, t.shipments
        status = self._rows(select(o.c.status).where(o.c.id == order_id))[0].status
        jobs = self._rows(select(j.c.id, j.c.status, j.c.partner_id, j.c.partner_job_id, j.c.batch_id)
                          .where(j.c.order_id == order_id).order_by(j.c.id))
        if status in ("accepted", "rendering"):
            return self._note("progress render", render_order(order_id, uow=self.svc.uow(), store=self.svc.store,
                                                              now=self._clock, clock=time.perf_counter))
        if status in ("ready_for_production", "in_production"):
            if any(r.status == JobStatus.PENDING and r.partner_id is None for r in jobs) or not jobs:
                return self._note("progress route", route_order(order_id, uow=self.svc.uow(), now=self._tick(),
                                                                rules=self.rules))
            if any(r.status == JobStatus.PENDING for r in jobs):
                batch_ready_jobs(self.svc.uow(), now=self._tick(31 * 60), rules=self.rules, new_id=self.svc.ids.new)
                return self._note("progress", "batched")
            batched = {r.batch_id for r in jobs if r.status == JobStatus.BATCHED and r.batch_id}
            if batched:
                batch_ready_jobs(self.svc.uow(), now=self._tick(31 * 60), rules=self.rules, new_id=self.svc.ids.new)
                for batch_id in sorted(batched):
                    self._note("progress submit", submit_batch(
                        batch_id, uow=self.svc.uow(), client=self.partner, endpoint_for=lambda pid: pid,
                        file_url=lambda asset: f"https://files/{asset}",
                        callback_url=lambda pid: f"https://api/webhooks/partners/{pid}", now=self._clock))
                return None
            for r in jobs:
                if r.partner_job_id and r.status in (JobStatus.SUBMITTED, JobStatus.QUEUED, JobStatus.PRINTING):
                    event_id = f"evt_{uuid.uuid4().hex[:16]}"
                    body = (f'{{"event_id":"{event_id}","occurred_at":"{self.now.isoformat()}",'
                            f'"type":"job.status","job":{{"id":"{r.partner_job_id}","external_id":"{r.id}",'
                            f'"status":"printed","photo_url":null}}}}').encode()
                    self.events.append((f"partner:{r.partner_id}", event_id, body))
                    self._deliver(f"partner:{r.partner_id}", event_id, body, data, apply=apply_partner_event,
                                  what="progress partner webhook")
            return None
        if status == "qa":
            verdict = data.draw(st.sampled_from(["pass", "pass", "pass", "fail"]), label="verdict")
            for r in jobs:
                if r.status == JobStatus.PRINTED:
                    with self.svc.uow() as uow:
                        job = uow.jobs.get(r.id, lock=True)
                        if verdict == "pass":
                            pass_job(job, uow=uow, at=self._tick(), source="worker:qa")
                        else:
                            fail_job(job, reason="misregistration", uow=uow, at=self._tick(), source="worker:qa",
                                     new_id=self.svc.ids.new, rules=QaRules())
                        uow.commit()
                    self._note("progress qa", verdict)
            return None
        if status == "ready_to_ship":
            return self._note("progress buy label", buy_label(
                order_id, uow=self.svc.uow(), carrier=self.carrier, store=self.svc.store, now=self._clock,
                new_id=self.svc.ids.new, ship_from=SHIP_FROM))
        if status in ("label_created", "shipped"):
            shipment = self._rows(select(s.c.carrier_shipment_id, s.c.tracking_code)
                                  .where(s.c.order_id == order_id, s.c.carrier_shipment_id.is_not(None)))
            if shipment:
                step = "in_transit" if status == "label_created" else "delivered"
                event_id = f"evt_{uuid.uuid4().hex[:16]}"
                body = (f'{{"id":"{event_id}","object":"Event","description":"tracker.updated","result":{{'
                        f'"object":"Tracker","tracking_code":"{shipment[0].tracking_code}",'
                        f'"shipment_id":"{shipment[0].carrier_shipment_id}","status":"{step}",'
                        f'"status_detail":"{step}","tracking_details":[]}}}}').encode()
                self.events.append(("carrier:easypost", event_id, body))
                self._deliver("carrier:easypost", event_id, body, data, apply=apply_carrier_event,
                              what="progress carrier webhook")
            return None
        return self._note("progress", f"at {status}")

    # ---- what must always hold ------------------------------------------------------------------------------

    @invariant()
    def at_most_one_partner_job_per_job_attempt(self) -> None:
        doubled = {job: n for job, n in self.partner.creates.items() if n > 1}
        assert not doubled, f"partner jobs created more than once: {doubled}"

    @invariant()
    def at_most_one_label_per_order(self) -> None:
        doubled = {order: n for order, n in self.carrier.purchases.items() if n > 1}
        assert not doubled, f"labels bought more than once: {doubled}"
        s = t.shipments
        labels = Counter(r.order_id for r in self._rows(select(s.c.order_id).where(s.c.label_key.is_not(None))))
        assert all(n == 1 for n in labels.values()), labels

    @invariant()
    def legal_transitions_only_and_never_backwards(self) -> None:
        with self.svc.engine.connect() as conn:
            backwards, illegal = backwards_and_illegal(status_changes(conn))
        backwards = [b for b in backwards if b[0] != Entity.ORDER]  # a reprint takes an order from QA back
        assert not illegal, f"illegal transitions: {illegal}"
        assert not backwards, f"moved backwards: {backwards}"

    @invariant()
    def refunds_never_exceed_charges(self) -> None:
        payments = self.h.payments
        unknown = payments.voided - set(payments.authorized)
        assert not unknown, f"voided authorisations never made: {unknown}"
        refunded = sum(payments.authorized[a] for a in payments.voided)
        assert refunded <= sum(payments.authorized.values())

    @invariant()
    def nothing_made_for_a_cancelled_order(self) -> None:
        if not self.cancelled:
            return
        j = t.print_jobs
        jobs = {r.id for r in self._rows(select(j.c.id).where(j.c.order_id.in_(self.cancelled)))}
        sent = {job for job in self.partner.creates if job in jobs}
        assert not sent, f"jobs of cancelled orders sent to the partner: {sent}"
        assert not set(self.carrier.purchases) & self.cancelled, "label bought for a cancelled order"


def lifecycle_model(ctx: Context) -> list[Figure]:
    """Run the state machine: 40 examples × 40 steps at "ci" size (about a minute here), 500 × 50 at "battery"
    size (the size CI runs: tests/battery/test_lifecycle_model.py)."""
    name = "lifecycle-model"
    examples, steps = ctx.pick((40, 40), (500, 50))
    OrderLifecycle.template = Template(ctx.workdir)
    Stats.examples, Stats.steps, Stats.outcomes = 0, 0, Counter()
    started = time.monotonic()
    error = None
    try:
        run_state_machine_as_test(OrderLifecycle, settings=settings(
            max_examples=examples, stateful_step_count=steps, deadline=None, database=None, derandomize=True,
            suppress_health_check=list(HealthCheck), print_blob=True))
    except Exception as failure:  # the falsifying example is what the figure reports
        error = "".join(traceback.format_exception_only(failure)).strip()
    elapsed = time.monotonic() - started
    reached = {k.removeprefix("progress ") for k in Stats.outcomes}
    print("lifecycle step outcomes:", dict(sorted(Stats.outcomes.items())))
    important = ("submit:submitted", "partner webhook:applied", "partner webhook:recorded", "qa:fail",
                 "buy label:label_created", "carrier webhook:applied", "cancel:cancelled")
    missed = [k for k in important if k not in reached]
    return [
        Figure(test=name, figure=f"{Stats.examples} examples, {Stats.steps:,} steps (≤ {steps} each) in "
                                 f"{elapsed:.0f} s: {'0 invariant violations' if error is None else error[:300]}",
               pass_figure=f"{examples} × {steps}: 0 invariant violations", passed=error is None),
        Figure(test=name, figure=f"lifecycle reached: {len(reached)} distinct step outcomes"
                                 + (f"; never reached {missed}" if missed else ""),
               pass_figure="submits, partner events applied and recorded, reprints, labels, scans, cancels",
               passed=not missed),
    ]
