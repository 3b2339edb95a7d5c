"""Partner webhooks on PostgreSQL and real Redis: the API as processes over real HTTP, a Dramatiq worker on the
`webhooks` queue; duplicated and shuffled deliveries make exactly one change each, forgeries none."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import secrets
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest
import redis
from sqlalchemy import func, select

from adapters.broker import queue_stats
from core.services.reconcile import reconcile
from core.states import JOB_ALLOWED, JobStatus, OrderStatus
from db import tables as t
from tests.integration.production_helpers import (
    Delivery,
    SubmittedJob,
    now_utc,
    partner_event,
    place_orders,
    pressroom_processes,
    release_to_partners,
    serve_sim,
    signature,
    signed,
    sim_ledger,
    submit_all,
    submitted_jobs,
)
from tests.integration.test_intake_on_postgres import RedisHarness

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PARTNER_STEPS = ("queued", "printing", "printed", "ready_for_shipment")  # what a partner reports, in order
JOB_ORDER = [JobStatus.PENDING, JobStatus.BATCHED, JobStatus.SUBMITTED, JobStatus.QUEUED, JobStatus.PRINTING,
             JobStatus.PRINTED]


def jobs_at_partners(pg_url: str, tmp_path, *, orders: int, units: int) -> tuple[RedisHarness, list[SubmittedJob],
                                                                                  str]:
    """Orders placed through the API, rendered, routed, batched and submitted to the partner sim over HTTP."""
    harness = RedisHarness(pg_url, tmp_path)
    batches = release_to_partners(harness.services, place_orders(harness, orders=orders, units=units))
    with serve_sim() as sim_url:
        submit_all(harness.services, batches, sim_url)
        ledger = sim_ledger(sim_url)
    assert (ledger["jobs_created"], ledger["duplicate_creates"]) == (orders * units, 0)
    return harness, submitted_jobs(harness.services.engine), sim_url


def post_all(api_url: str, deliveries: list[Delivery], *, threads: int) -> list[tuple[int, str, float]]:
    """POST every delivery over HTTP from `threads` threads; (status, body status or error code, seconds)."""
    with httpx.Client(base_url=api_url, timeout=30, limits=httpx.Limits(max_connections=threads)) as client:
        def post(delivery: Delivery) -> tuple[int, str, float]:
            started = time.perf_counter()
            response = client.post(delivery.path, content=delivery.body, headers=delivery.headers)
            body = response.json()
            return response.status_code, body.get("status") or body.get("type", ""), time.perf_counter() - started

        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(post, deliveries))


def wait_until_processed(engine, redis_url: str, expected: int, system, timeout: float = 60) -> float:
    """Until `expected` inbox rows are no longer `received` and the webhooks queue is empty; returns seconds."""
    started = time.monotonic()
    client = redis.Redis.from_url(redis_url)
    w = t.webhook_inbox
    while time.monotonic() - started < timeout:
        with engine.connect() as conn:
            done = conn.scalar(select(func.count()).where(w.c.status != "received"))
        [webhooks] = queue_stats(client, ("webhooks",))
        if done >= expected and webhooks.depth == 0 and webhooks.in_flight == 0:
            return time.monotonic() - started
        system.assert_alive()
        time.sleep(0.25)
    raise AssertionError(f"{done}/{expected} inbox rows processed after {timeout}s; logs in {system.logs}")


def job_status_changes(conn) -> dict[str, list[dict]]:
    """Every job's status-change events, in the order they were written."""
    e = t.order_events
    changes: dict[str, list[dict]] = defaultdict(list)
    for row in conn.execute(select(e.c.id, e.c.type, e.c.source, e.c.payload).where(e.c.type.like("job.%"))
                            .order_by(e.c.id)):
        if "to" in row.payload and "entity_id" in row.payload:
            changes[row.payload["entity_id"]].append({"type": row.type, "source": row.source, **row.payload})
    return changes


def qa_messages(redis_url: str) -> list[dict]:
    client = redis.Redis.from_url(redis_url)
    return [json.loads(raw) for raw in client.hvals("dramatiq:qa.msgs")]


def test_a_thousand_duplicated_and_shuffled_webhooks_make_exactly_one_change_each(pg_url, redis_url, tmp_path):
    with pressroom_processes(pg_url, redis_url, tmp_path) as system:
        # given 200 jobs (40 orders × 5 units, spread over partners) submitted to the partner sim
        harness, jobs, sim_url = jobs_at_partners(pg_url, tmp_path, orders=40, units=5)
        engine = harness.services.engine
        assert len(jobs) == 200 and len({j.partner_id for j in jobs}) >= 3
        # and each job's four partner events, each delivered one to three times, all shuffled together
        rng = random.Random(20260704)
        events: dict[str, tuple[str, str]] = {}
        deliveries: list[Delivery] = []
        for job in jobs:
            at = now_utc()
            for step, status in enumerate(PARTNER_STEPS):
                event_id, body = partner_event(job, status, at=at + timedelta(seconds=step), sim_url=sim_url)
                events[event_id] = (job.id, status)
                deliveries += [signed(job.partner_id, event_id, body)] * rng.choice((1, 2, 2, 3))
        rng.shuffle(deliveries)
        assert len(events) == 800 and len(deliveries) >= 1000
        system.wait_http(f"{system.api_url}/healthz")

        # when they are posted concurrently over HTTP while a worker applies them from the webhooks queue
        started = time.monotonic()
        results = post_all(system.api_url, deliveries, threads=32)
        posted_s = time.monotonic() - started
        drained_s = wait_until_processed(engine, redis_url, len(events), system)

        # then every delivery got a 2xx, and exactly one delivery of each event was accepted for processing
        statuses = Counter(code for code, _, _ in results)
        answers = Counter(answer for _, answer, _ in results)
        assert statuses == {200: len(deliveries)}, statuses
        assert answers == {"accepted": len(events), "duplicate": len(deliveries) - len(events)}, answers
        with engine.connect() as conn:
            w = t.webhook_inbox
            inbox = conn.execute(select(w.c.event_id, w.c.status, w.c.error)
                                 .where(w.c.source.like("partner:%"))).all()
            job_rows = conn.execute(select(t.print_jobs.c.id, t.print_jobs.c.status, t.print_jobs.c.photo_url)).all()
            orders = dict(conn.execute(select(t.orders.c.status, func.count()).group_by(t.orders.c.status)).all())
            changes = job_status_changes(conn)
            e = t.order_events
            recorded = [row.payload for row in conn.execute(select(e.c.payload)
                                                             .where(e.c.type == "partner.event_recorded"))]
            order_qa = Counter(conn.scalars(select(e.c.order_id).where(e.c.type == "order.qa")))
        # and the inbox holds one processed row per distinct event, none rejected
        assert len(inbox) == len(events) and {r.event_id for r in inbox} == set(events)
        assert Counter(r.status for r in inbox) == {"processed": len(events)}, [r.error for r in inbox if r.error]
        # and every job is printed, with its photo link, and went there exactly once, never backwards
        assert {r.status for r in job_rows} == {JobStatus.PRINTED} and all(r.photo_url for r in job_rows)
        late_within_job = 0
        for job in jobs:
            history = changes[job.id]
            kinds = Counter(c["type"] for c in history)
            assert kinds["job.printed"] == 1 and kinds["job.queued"] <= 1 and kinds["job.printing"] <= 1, history
            previous = JobStatus.PENDING
            for change in history:
                before, after = JobStatus(change["from"]), JobStatus(change["to"])
                assert before == previous and after in JOB_ALLOWED[before], history
                assert JOB_ORDER.index(after) > JOB_ORDER.index(before), history
                previous = after
            assert previous == JobStatus.PRINTED
        # and each distinct partner event had exactly one effect: a status change, or a line on the timeline
        applied = [c["partner_event"] for history in changes.values() for c in history
                   if c["source"].startswith("partner:")]
        noted = [r["partner_event"] for r in recorded]
        effects = Counter(applied + noted)
        assert set(effects) == set(events) and set(effects.values()) == {1}, effects.most_common(3)
        assert len(applied) + len(noted) == len(events)
        # and late events (e.g. `printing` after `printed`) really happened, and were only recorded
        for r in recorded:
            job_id, status = events[r["partner_event"]]
            assert r["job"] == job_id and r["partner_status"] == status
            late_within_job += status != "ready_for_shipment"
        assert late_within_job > 0
        assert sum(1 for r in recorded if r["partner_status"] == "ready_for_shipment") == len(jobs)
        # and every order is in QA (all its jobs printed), having moved there once; one inspection per job
        assert orders == {OrderStatus.QA: 40}, orders
        assert len(order_qa) == 40 and set(order_qa.values()) == {1}
        inspections = Counter(m["kwargs"]["job_id"] for m in qa_messages(redis_url))
        assert set(inspections) == {j.id for j in jobs} and set(inspections.values()) == {1}
        latencies = sorted(seconds for _, _, seconds in results)
        print(f"\nwebhooks: {len(deliveries)} deliveries of {len(events)} distinct events for {len(jobs)} jobs; "
              f"2xx {100 * statuses[200] / len(deliveries):.1f} %; {len(applied)} status changes + "
              f"{len(noted)} recorded ({late_within_job} late, {len(jobs)} ready_for_shipment); posted in "
              f"{posted_s:.1f} s (p50 {latencies[len(latencies) // 2] * 1000:.0f} ms, "
              f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.0f} ms), applied {drained_s:.1f} s later")


FORGERIES = {  # how a delivery is spoiled → the status the API must answer
    "wrong secret": 401, "another partner's secret": 401, "tampered body": 401, "re-serialised body": 401,
    "sent to another partner": 401, "no sha256= prefix": 401, "upper-case hex": 401, "truncated": 401,
    "sha1 instead of sha256": 401, "empty signature": 401, "unsigned": 422, "no event id": 422,
    "oversized signature": 422,
}


def forge(kind: str, genuine: Delivery) -> Delivery:
    partner = genuine.path.rsplit("/", 1)[-1]
    other_partner = "acme-columbus" if partner != "acme-columbus" else "spree-berlin"
    headers = dict(genuine.headers)
    body, path = genuine.body, genuine.path
    good = headers["X-Partner-Signature"]
    if kind == "wrong secret":
        headers["X-Partner-Signature"] = signature(f"whsec_{secrets.token_hex(8)}", body)
    elif kind == "another partner's secret":
        headers["X-Partner-Signature"] = signature(f"whsec_dev_{other_partner}", body)
    elif kind == "tampered body":
        body = body.replace(b'"status":"printed"', b'"status":"cancelled"')
    elif kind == "re-serialised body":  # same JSON, different bytes: the signature is over the raw body
        body = json.dumps(json.loads(body), indent=1).encode()
    elif kind == "sent to another partner":
        path = f"/webhooks/partners/{other_partner}"
    elif kind == "no sha256= prefix":
        headers["X-Partner-Signature"] = good.removeprefix("sha256=")
    elif kind == "upper-case hex":
        headers["X-Partner-Signature"] = "sha256=" + good.removeprefix("sha256=").upper()
    elif kind == "truncated":
        headers["X-Partner-Signature"] = good[:-8]
    elif kind == "sha1 instead of sha256":
        headers["X-Partner-Signature"] = "sha1=" + hmac.new(f"whsec_dev_{partner}".encode(), body,
                                                            hashlib.sha1).hexdigest()
    elif kind == "empty signature":
        headers["X-Partner-Signature"] = ""
    elif kind == "unsigned":
        del headers["X-Partner-Signature"]
    elif kind == "no event id":
        del headers["X-Partner-Event-Id"]
    elif kind == "oversized signature":
        headers["X-Partner-Signature"] = good + "0" * 300
    else:
        raise ValueError(kind)
    assert body != genuine.body or path != genuine.path or headers != genuine.headers
    return replace(genuine, path=path, headers=headers, body=body)


def test_forged_tampered_and_unsigned_webhooks_are_refused_and_change_nothing(pg_url, redis_url, tmp_path):
    with pressroom_processes(pg_url, redis_url, tmp_path) as system:
        # given 12 jobs at partners, and a genuine `printed` event for each
        harness, jobs, sim_url = jobs_at_partners(pg_url, tmp_path, orders=6, units=2)
        engine = harness.services.engine
        genuine = []
        for job in jobs:
            event_id, body = partner_event(job, "printed", at=now_utc(), sim_url=sim_url)
            genuine.append(signed(job.partner_id, event_id, body))
        # and every kind of forgery of each, twice over (fresh random secrets), shuffled
        forged = [(kind, forge(kind, d)) for d in genuine for kind in FORGERIES for _ in range(2)]
        random.Random(7).shuffle(forged)
        assert len(forged) >= 300
        system.wait_http(f"{system.api_url}/healthz")

        # when the forgeries are posted concurrently
        results = post_all(system.api_url, [d for _, d in forged], threads=24)

        # then each is refused as its kind demands, and nothing was stored, queued or changed
        wrong = [(kind, code) for (kind, _), (code, _, _) in zip(forged, results, strict=True)
                 if code != FORGERIES[kind]]
        assert not wrong, wrong[:10]
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(t.webhook_inbox)) == 0
            assert {s for s in conn.scalars(select(t.print_jobs.c.status))} == {JobStatus.SUBMITTED}
            assert conn.scalar(select(func.count()).where(t.order_events.c.source.like("partner:%"))) == 0
        [webhooks] = queue_stats(redis.Redis.from_url(redis_url), ("webhooks",))
        assert (webhooks.depth, webhooks.in_flight) == (0, 0)

        # and the genuine deliveries are still accepted and applied (the refusals were about the signatures)
        results = post_all(system.api_url, genuine, threads=12)
        assert Counter((code, answer) for code, answer, _ in results) == {(200, "accepted"): len(genuine)}
        wait_until_processed(engine, redis_url, len(genuine), system)
        with engine.connect() as conn:
            assert {s for s in conn.scalars(select(t.print_jobs.c.status))} == {JobStatus.PRINTED}
        print(f"\nforgeries: {len(forged)} refused ({dict(Counter(FORGERIES[k] for k, _ in forged))}), "
              f"0 stored, 0 effects; {len(genuine)} genuine accepted")


def test_a_webhook_for_a_partner_we_do_not_have_is_refused_and_stores_nothing(pg_url, redis_url, tmp_path):
    # given the API (no such partner as "mallory-print" in the catalogue)
    api = RedisHarness(pg_url, tmp_path)
    body = json.dumps({"event_id": "evt_x", "occurred_at": now_utc().isoformat(), "type": "job.status",
                       "job": {"id": "pj_x", "external_id": "job_x", "status": "printed"}}).encode()
    # when a webhook arrives for it, signed the way a dev secret would be signed
    delivery = signed("mallory-print", "evt_x", body)
    response = api.client.post(delivery.path, content=delivery.body, headers=delivery.headers)
    # then it is refused, and nothing is stored
    with api.services.engine.connect() as conn:
        stored = conn.scalar(select(func.count()).select_from(t.webhook_inbox))
    assert response.status_code in (401, 404) and stored == 0, (response.status_code, response.text, stored)


def test_a_replayed_body_under_another_event_id_header_is_stored_once(pg_url, redis_url, tmp_path):
    # given a genuine, signed partner event that was delivered once
    api = RedisHarness(pg_url, tmp_path)
    job = SubmittedJob(id="job_1", order_id="ord_1", partner_id="spree-berlin", partner_job_id="pj_1")
    event_id, body = partner_event(job, "printed", at=now_utc(), sim_url="http://sim")
    first = signed(job.partner_id, event_id, body)
    assert api.client.post(first.path, content=first.body, headers=first.headers).json()["status"] == "accepted"
    # when the same signed body is replayed with a different event id in the (unsigned) header
    replay = replace(first, headers=first.headers | {"X-Partner-Event-Id": f"evt_{secrets.token_hex(12)}"})
    api.client.post(replay.path, content=replay.body, headers=replay.headers)
    # then the inbox still holds that event once
    with api.services.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(t.webhook_inbox)) == 1


def test_an_acknowledged_webhook_whose_message_was_lost_is_queued_again_by_the_reconciler(
        pg_url, redis_url, tmp_path):
    # given a partner webhook the API acknowledged (stored in the inbox, its message sent to Redis)
    api = RedisHarness(pg_url, tmp_path)
    job = SubmittedJob(id="job_1", order_id="ord_1", partner_id="spree-berlin", partner_job_id="pj_1")
    delivery = signed(job.partner_id, *partner_event(job, "printed", at=now_utc(), sim_url="http://sim"))
    assert api.client.post(delivery.path, content=delivery.body, headers=delivery.headers).status_code == 200
    with api.services.engine.connect() as conn:
        inbox_id = conn.scalar(select(t.webhook_inbox.c.id))
    # and then the message was lost (Redis flushed); the partner will not send it again
    redis.Redis.from_url(redis_url).flushdb()
    # when the reconciler runs a day later
    reconcile(api.services.uow(), now=now_utc() + timedelta(days=1),
              deadlines_s=api.services.settings.stage_deadlines_s)
    # then the event is on the webhooks queue again
    client = redis.Redis.from_url(redis_url)
    queued = [json.loads(client.hget("dramatiq:webhooks.msgs", i)) for i in client.lrange("dramatiq:webhooks", 0, -1)]
    assert [m["kwargs"] for m in queued] == [{"inbox_id": inbox_id}]
