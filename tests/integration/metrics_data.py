"""A small, hand-counted history of checkouts, renders, jobs, verdicts, labels and notifications for the metrics
tests (integration and dashboard), written by direct inserts so every figure can be counted on paper."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert

from core.commands import Address
from db import tables as t

DAY1 = datetime(2026, 11, 19, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
NOW = DAY2 + timedelta(days=1)  # the clock the figures are read at: midnight after day 2
A, B = "acme-columbus", "pacific-la"
SKU = "TEE-DTG-BLK-S"  # base cost 900 cents in the seeded catalogue


def at(day: datetime, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return day + timedelta(hours=hh, minutes=mm, seconds=ss)


class History:
    """Inserts rows and remembers ids, so tests read like the story they tell."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.n = 0

    def _next(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.n:04d}"

    def order(self, number: str, placed: datetime) -> str:
        order_id = f"ord_{number.lower()}"
        customer_id = f"cus_{number.lower()}"
        address = Address(name="Test Person", line1="1 Main St", city="Columbus", postal_code="43004",
                          country="US")
        with self.engine.begin() as conn:
            conn.execute(insert(t.customers).values(
                id=customer_id, name_enc="Test Person", email_enc=f"{number}@example.com", email_hash=number,
                email_opt_out=False, sms_opt_out=False, created_at=placed))
            conn.execute(insert(t.orders).values(
                id=order_id, number=number, channel="storefront", external_id=number, customer_id=customer_id,
                status="accepted", shipping_speed="standard", shipping_address_enc=address, total_cents=2400,
                currency="USD", payment_authorization="auth", priority=0.0, placed_at=placed,
                status_changed_at=placed, version=1))
            conn.execute(insert(t.order_lines).values(
                id=f"lin_{number.lower()}", order_id=order_id, line_no=1, sku=SKU, quantity=1, texts={},
                template_key="tee-front", template_version=1, unit_price_cents=2400))
        return order_id

    def event(self, order_id: str | None, when: datetime, type_: str, source: str, **payload: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(t.order_events).values(order_id=order_id, at=when, type=type_, source=source,
                                                       payload=payload, dedupe_key=self._next("evt")))

    def rejection(self, when: datetime, channel: str, *codes: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(t.intake_rejections), [{"at": when, "channel": channel, "code": c} for c in codes])

    def retrieval(self, when: datetime, ms: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(t.asset_retrievals).values(at=when, asset_id="ast_1", file="print.png", ms=ms,
                                                           bytes=1000))

    def queue_sample(self, when: datetime, queue: str, oldest_age_s: float | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(t.queue_samples).values(at=when, queue=queue, depth=1, delayed=0, dead=0,
                                                        oldest_age_s=oldest_age_s))

    def job(self, order_id: str, created: datetime, *, partner: str | None, status: str = "submitted",
            attempt: int = 1, reprint_of: str | None = None, reason: str | None = None,
            submitted: datetime | None = None) -> str:
        job_id = self._next("job")
        with self.engine.begin() as conn:
            conn.execute(insert(t.print_jobs).values(
                id=job_id, order_id=order_id, line_id=f"lin_{order_id.removeprefix('ord_')}", unit_index=1,
                status=status, attempt=attempt, reprint_of=reprint_of, reason_code=reason, priority=0.0,
                partner_id=partner, created_at=created, status_changed_at=submitted or created, version=1,
                submitted_at=submitted))  # stamped with the job.submitted event, as PrintJob.advance does
        if submitted is not None:
            self.event(order_id, submitted, "job.submitted", "worker:production", entity_id=job_id,
                       partner=partner)
        return job_id

    def verdict(self, job_id: str, order_id: str, when: datetime, *, failed_for: str | None = None) -> str:
        inspection_id = self._next("ins")
        status = "failed" if failed_for else "passed"
        with self.engine.begin() as conn:
            conn.execute(insert(t.inspections).values(
                id=inspection_id, job_id=job_id, order_id=order_id, status=status, scores={}, reasons=[],
                created_at=when, status_changed_at=when, version=2))
        payload = {"entity_id": inspection_id, "from": "pending", "to": status}
        if failed_for:
            payload["reason"] = failed_for
        self.event(order_id, when, f"inspection.{status}", "worker:qa", **payload)
        return inspection_id

    def notification(self, order_id: str, when: datetime, milestone: str, channel: str, status: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(t.notifications).values(
                id=self._next("ntf"), order_id=order_id, milestone=milestone, channel=channel, status=status,
                attempts=1, error="smtp said no" if status == "failed" else None, created_at=when))


def build(engine: Engine, day1: datetime = DAY1) -> dict[str, str]:
    """The story every metrics test counts against (see the comments for the hand counts), from `day1` on."""
    d1, d2 = day1, day1 + timedelta(days=1)
    h = History(engine)
    o = {n: h.order(f"PR-{n}", at(d1, 10, n)) for n in range(1, 7)}  # six orders on day 1
    o |= {n: h.order(f"PR-{n}", at(d2, 10, n)) for n in range(7, 11)}  # four on day 2: 10 accepted
    # checkouts refused: two on day 1 (one with two reasons, still one checkout), one on day 2
    h.rejection(at(d1, 11), "storefront", "text_too_long", "prohibited_word")
    h.rejection(at(d1, 11, 5), "api", "artwork_too_small")
    h.rejection(at(d2, 9), "storefront", "text_too_long")
    # renders: orders 1..9 rendered, order 10 held by the render worker on day 2; a staff hold does not count
    for n in range(1, 10):
        day = d1 if n <= 6 else d2
        h.event(o[n], at(day, 10, n, 30), "order.ready_for_production", "worker:render", entity_id=o[n])
    h.event(o[10], at(d2, 10, 20), "order.on_hold", "worker:render", entity_id=o[10], reason="render_failed",
            note="line 1: template is gone")
    h.event(o[6], at(d1, 12), "order.on_hold", "user:alice", entity_id=o[6], reason="staff")
    # print-file downloads: 10, 20 … 200 ms on day 1, one 500 ms on day 2
    for i in range(1, 21):
        h.retrieval(at(d1, 12, i), 10.0 * i)
    h.retrieval(at(d2, 12), 500.0)
    # queue samples on day 1: render ages (empty = 0), 10, 20, 400 s; qa 5, 5 s
    for minute, age in enumerate([None, 10.0, 20.0, 400.0]):
        h.queue_sample(at(d1, 13, minute), "render", age)
    for minute in range(2):
        h.queue_sample(at(d1, 13, minute), "qa", 5.0)
    # jobs (first-print budget 60 + 300 + 2700 = 3060 s; reprint budget 2700 s)
    j1 = h.job(o[1], at(d1, 10), partner=A, submitted=at(d1, 10, 30), status="qa_failed")  # on time
    j2 = h.job(o[2], at(d1, 10, 1), partner=A, submitted=at(d1, 11, 30), status="qa_passed")  # late
    j3 = h.job(o[3], at(d1, 10, 2), partner=B, submitted=at(d1, 10, 40), status="qa_passed")  # on time
    h.job(o[4], at(d1, 10, 3), partner=B, status="pending")  # never submitted, long past budget: late
    h.job(o[6], at(d1, 10, 4), partner=A, status="cancelled")  # cancelled: not counted
    j5 = h.job(o[1], at(d2, 8), partner=A, attempt=2, reprint_of=j1, reason="misregistration",
               submitted=at(d2, 8, 30), status="qa_failed")  # reprint on time
    h.job(o[1], at(d2, 10), partner=None, attempt=3, reprint_of=j5, reason="colour_shift",
          status="pending")  # reprint not routed, past its budget at NOW: late, no partner
    h.job(o[9], at(d2, 23, 55), partner=A, status="pending")  # still within budget: not decided yet
    # verdicts: j1 failed (misregistration) and j5 failed (colour_shift) at A; j2 passed at A; j3 passed at B
    h.verdict(j1, o[1], at(d1, 13), failed_for="misregistration")
    h.verdict(j2, o[2], at(d1, 14))
    h.verdict(j3, o[3], at(d1, 13, 30))
    h.verdict(j5, o[1], at(d2, 10), failed_for="colour_shift")
    # labels on day 2: bought for orders 1, 2, 3; the carrier refused order 4
    for n in (1, 2, 3):
        h.event(o[n], at(d2, 15, n), "shipment.purchased", "worker:shipping", entity_id=f"shp_{n}")
    h.event(o[4], at(d2, 15, 4), "order.on_hold", "worker:shipping", entity_id=o[4], reason="carrier_exception",
            note="no rates")
    # notifications on day 1: sent ×2 (order 1), failed (2), unknown (3), opted out (4), in flight (5)
    h.notification(o[1], at(d1, 10, 1), "received", "email", "sent")
    h.notification(o[1], at(d1, 10, 1), "received", "sms", "sent")
    h.notification(o[2], at(d1, 10, 2), "received", "email", "failed")
    h.notification(o[3], at(d1, 10, 3), "received", "email", "unknown")
    h.notification(o[4], at(d1, 10, 4), "received", "email", "skipped_opt_out")
    h.notification(o[5], at(d1, 10, 5), "received", "sms", "sending")
    return {f"o{n}": order_id for n, order_id in o.items()}
