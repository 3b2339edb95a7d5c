"""Webhook checks: a storm of duplicated, shuffled, late partner and carrier deliveries (exactly one effect per
event), and forged, tampered, unsigned or replayed partner, carrier and Shopify deliveries (no effect at all).

Both run the API as uvicorn processes over real HTTP on PostgreSQL and Redis, with a Dramatiq worker applying the
`webhooks` and `tracking` queues, and the partner and carrier sims as the outside world. Effects are counted on
the timeline (one line per status change or recorded event) and reconciled with the sims' ledgers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import random
import re
import secrets
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta

import httpx
import redis
from sqlalchemy import func, select

from adapters.broker import queue_stats
from adapters.carrier import EasyPostCarrier
from battery.framework import Context, Figure, count_figure, percent
from core.commands import Address
from core.services.shipping import SCAN_KIND, buy_label
from core.states import TABLES, Entity, JobStatus, OrderStatus, ShipmentStatus
from db import tables as t
from sims.carrier import BackgroundServer, CarrierSimConfig, sign_webhook
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

log = logging.getLogger(__name__)

PARTNER_STEPS = ("queued", "printing", "printed", "ready_for_shipment")
CARRIER_STEPS = ("pre_transit", "in_transit", "out_for_delivery", "delivered")
CARRIER_PATH = "/webhooks/carrier/easypost"
SHOPIFY_PATH = "/webhooks/shopify/orders-create"
CARRIER_SECRET = "whsec_dev_easypost"  # the API's default EASYPOST_WEBHOOK_SECRET
SHOPIFY_SECRET = "shpss_dev_secret"  # the API's default SHOPIFY_WEBHOOK_SECRET
SHIP_FROM = Address(name="Pressroom Fulfilment", line1="55 Water St", city="Brooklyn", region="NY",
                    postal_code="11201", country="US")
US_CUSTOMER = {"name": "Grace Hopper", "line1": "350 5th Ave", "city": "New York", "region": "NY",
               "postal_code": "10118", "country": "US"}
RANK = {  # how far along each entity is; a change to a lower rank is a move backwards
    Entity.JOB: [JobStatus.PENDING, JobStatus.BATCHED, JobStatus.SUBMITTED, JobStatus.QUEUED, JobStatus.PRINTING,
                 JobStatus.PRINTED, JobStatus.QA_PASSED],
    Entity.SHIPMENT: [ShipmentStatus.PENDING, ShipmentStatus.CREATED, ShipmentStatus.PURCHASED,
                      ShipmentStatus.IN_TRANSIT, ShipmentStatus.OUT_FOR_DELIVERY, ShipmentStatus.DELIVERED],
    Entity.ORDER: [OrderStatus.ACCEPTED, OrderStatus.RENDERING, OrderStatus.READY_FOR_PRODUCTION,
                   OrderStatus.IN_PRODUCTION, OrderStatus.QA, OrderStatus.READY_TO_SHIP, OrderStatus.LABEL_CREATED,
                   OrderStatus.SHIPPED, OrderStatus.DELIVERED],
}


# ---- the world a check runs in -------------------------------------------------------------------------------


@dataclass
class World:
    """Pressroom's processes, its database, and the two sims, with entities out at the partner and carrier."""

    ctx: Context
    harness: RedisHarness
    system: object
    partner_url: str
    carrier: BackgroundServer
    jobs: list[SubmittedJob]
    shipments: list[dict]  # {"order_id", "shipment_id", "carrier_shipment_id", "tracking_code"}

    @property
    def engine(self):
        return self.harness.services.engine


@contextmanager
def world(ctx: Context, *, partner_orders: int, units: int, shipments: int) -> Iterator[World]:
    """Jobs submitted to the partner sim (`partner_orders` × `units`), `shipments` labels bought from the carrier
    sim, the API (3 processes) and a worker on `webhooks` + `tracking` running; sims stay up for their ledgers."""
    with ExitStack() as stack:
        system = stack.enter_context(pressroom_processes(ctx.pg_url, ctx.redis_url, ctx.workdir,
                                                         queues=("webhooks", "tracking")))
        harness = RedisHarness(ctx.pg_url, ctx.workdir)
        stack.callback(harness.services.engine.dispose)
        partner_url = stack.enter_context(serve_sim())
        jobs: list[SubmittedJob] = []
        if partner_orders:
            batches = release_to_partners(harness.services, place_orders(harness, orders=partner_orders,
                                                                         units=units))
            submit_all(harness.services, batches, partner_url)
            jobs = submitted_jobs(harness.services.engine)
        carrier = stack.enter_context(BackgroundServer(CarrierSimConfig(webhook_url=None, seed=3)))
        bought = [_label_for(harness, carrier, n) for n in range(shipments)]
        system.wait_http(f"{system.api_url}/healthz")
        yield World(ctx=ctx, harness=harness, system=system, partner_url=partner_url, carrier=carrier,
                    jobs=jobs, shipments=bought)


def _label_for(harness: RedisHarness, carrier: BackgroundServer, n: int) -> dict:
    """An order through the API, moved to ready_to_ship by the domain's own transitions, its label bought from
    the carrier sim through the official EasyPost client (the shipping stage's own service)."""
    if not hasattr(harness, "_mug_art"):
        harness._mug_art = harness.upload()["id"]
    body = harness.order_body(harness._mug_art, shipping_address=US_CUSTOMER)
    body["lines"][0].update(sku="MUG-SUB-11OZ-WHT", texts={"name": f"Ada {n}"})
    response = harness.client.post("/v1/orders", json=body)
    assert response.status_code == 201, response.text
    order_id = response.json()["id"]
    svc = harness.services
    with svc.uow() as uow:
        order = uow.orders.get(order_id)
        for status in (OrderStatus.RENDERING, OrderStatus.READY_FOR_PRODUCTION, OrderStatus.IN_PRODUCTION,
                       OrderStatus.QA, OrderStatus.READY_TO_SHIP):
            order.advance(status, at=svc.now(), source="battery")
        uow.commit()
    outcome = buy_label(order_id, uow=svc.uow(), carrier=EasyPostCarrier("EZTK_battery", carrier.api_base,
                                                                          timeout_s=10),
                        store=svc.store, now=svc.now, new_id=svc.ids.new, ship_from=SHIP_FROM)
    assert outcome == "label_created", outcome
    s = t.shipments
    with svc.engine.connect() as conn:
        row = conn.execute(select(s.c.id, s.c.carrier_shipment_id, s.c.tracking_code)
                           .where(s.c.order_id == order_id)).one()
    return {"order_id": order_id, "shipment_id": row.id, "carrier_shipment_id": row.carrier_shipment_id,
            "tracking_code": row.tracking_code}


# ---- deliveries --------------------------------------------------------------------------------------------


def carrier_event(shipment: dict, status: str, *, step: int) -> tuple[str, bytes]:
    """A tracker.updated Event shaped as EasyPost (and the carrier sim) sends it; returns (event id, raw body)."""
    event_id = f"evt_{secrets.token_hex(12)}"
    at = (now_utc() + timedelta(hours=step)).isoformat(timespec="seconds")
    scan = {"object": "TrackingDetail", "message": f"battery scan: {status}", "status": status,
            "status_detail": status, "datetime": at, "source": "USPS",
            "tracking_location": {"city": "NEW YORK", "state": "NY", "country": "US", "zip": "10118"}}
    event = {"id": event_id, "object": "Event", "mode": "test", "description": "tracker.updated",
             "previous_attributes": {"status": CARRIER_STEPS[step - 1] if step else "unknown"},
             "created_at": at, "updated_at": at,
             "result": {"id": f"trk_{shipment['shipment_id']}", "object": "Tracker", "mode": "test",
                        "tracking_code": shipment["tracking_code"], "status": status, "status_detail": status,
                        "shipment_id": shipment["carrier_shipment_id"], "carrier": "USPS",
                        "tracking_details": [scan], "public_url": f"https://track.example/{shipment['tracking_code']}"}}
    return event_id, json.dumps(event, separators=(",", ":")).encode()


def carrier_signed(event_id: str, body: bytes, *, secret: str = CARRIER_SECRET) -> Delivery:
    return Delivery(path=CARRIER_PATH, body=body, event_id=event_id,
                    headers={"Content-Type": "application/json", "X-Hmac-Signature": sign_webhook(body, secret)})


@dataclass(frozen=True, slots=True)
class Event:
    """One distinct event of one entity, and where it sits in that entity's history."""

    kind: str  # "partner" | "carrier"
    entity: str  # job id or shipment id
    status: str
    step: int
    delivery: Delivery


def storm_schedule(events: list[Event], *, copies: int, late_share: float, rng: random.Random) -> tuple[
        list[Delivery], set[str]]:
    """Every event `copies` times: first copies in each entity's order (all entities interleaved), except
    `late_share` of the events, whose copies all come after their entity's last event; the other copies of each
    event land anywhere after its first. Returns the deliveries and the ids of the events sent late."""
    late = {e.delivery.event_id for e in rng.sample(events, round(len(events) * late_share))}
    entities = sorted({e.entity for e in events})
    index = {entity: n for n, entity in enumerate(entities)}
    span = (max(e.step for e in events) + 2) * len(entities)
    keyed = []
    for event in events:
        first = (event.step + (len(PARTNER_STEPS) + 1 if event.delivery.event_id in late else 0)) * len(entities) \
            + index[event.entity] + rng.random()
        keyed.append((first, event.delivery))
        keyed += [(first + rng.uniform(0, span), event.delivery) for _ in range(copies - 1)]
    keyed.sort(key=lambda item: item[0])
    return [delivery for _, delivery in keyed], late


def post_all(api_url: str, deliveries: list[Delivery], *, threads: int) -> list[tuple[int, str, float]]:
    """POST every delivery over HTTP from `threads` threads; (status, body status or problem type, seconds)."""
    with httpx.Client(base_url=api_url, timeout=60, limits=httpx.Limits(max_connections=threads)) as client:
        def post(delivery: Delivery) -> tuple[int, str, float]:
            started = time.perf_counter()
            response = client.post(delivery.path, content=delivery.body, headers=delivery.headers)
            try:
                body = response.json()
            except ValueError:
                body = {}
            answer = body.get("status") if isinstance(body.get("status"), str) else body.get("type", "")
            return response.status_code, str(answer), time.perf_counter() - started

        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(post, deliveries))


def wait_applied(w: World, expected: int, timeout: float = 180) -> float:
    """Until `expected` inbox rows have left `received` and the webhooks and tracking queues are empty."""
    started = time.monotonic()
    client = redis.Redis.from_url(w.ctx.redis_url)
    inbox = t.webhook_inbox
    done = 0
    while time.monotonic() - started < timeout:
        with w.engine.connect() as conn:
            done = conn.scalar(select(func.count()).where(inbox.c.status != "received"))
        stats = queue_stats(client, ("webhooks", "tracking"))
        if done >= expected and all(s.depth == 0 and s.in_flight == 0 for s in stats):
            return time.monotonic() - started
        w.system.assert_alive()
        time.sleep(0.25)
    raise AssertionError(f"{done}/{expected} inbox rows applied after {timeout}s; logs in {w.system.logs}")


# ---- what happened, from the database ---------------------------------------------------------------------------


def status_changes(conn) -> dict[tuple[str, str], list[dict]]:
    """Every status change on the timeline, per (entity kind, entity id), in the order written."""
    e = t.order_events
    changes: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in conn.execute(select(e.c.type, e.c.source, e.c.payload).order_by(e.c.id)):
        payload = row.payload
        if isinstance(payload, dict) and {"entity_id", "from", "to"} <= payload.keys():
            kind = row.type.split(".", 1)[0]
            changes[(kind, payload["entity_id"])].append({"source": row.source, **payload})
    return changes


def backwards_and_illegal(changes: dict[tuple[str, str], list[dict]]) -> tuple[list, list]:
    """Changes that moved an entity to a lower rank, and changes its transition table does not allow."""
    backwards, illegal = [], []
    for (kind, entity_id), history in changes.items():
        try:
            entity = Entity(kind)
        except ValueError:
            continue
        table, ranks = TABLES[entity], RANK.get(entity)
        previous = None
        for change in history:
            before, after = change["from"], change["to"]
            status_type = type(next(iter(table)))
            if previous is not None and before != previous:
                illegal.append((kind, entity_id, f"chain broken: {previous} then {before}->{after}"))
            if status_type(after) not in table[status_type(before)]:
                illegal.append((kind, entity_id, f"{before}->{after}"))
            if ranks and after in ranks and before in ranks and ranks.index(after) < ranks.index(before):
                backwards.append((kind, entity_id, f"{before}->{after}"))
            previous = after
    return backwards, illegal


def effects_per_event(conn) -> Counter:
    """Effects per distinct webhook event id: a status change it caused, or the line recording it (partner);
    the scan line on the timeline (carrier: one per scan, applied or not)."""
    e = t.order_events
    effects: Counter = Counter()
    for row in conn.execute(select(e.c.type, e.c.source, e.c.payload)):
        payload = row.payload if isinstance(row.payload, dict) else {}
        if row.source.startswith("partner:") and "partner_event" in payload and (
                row.type == "partner.event_recorded" or row.type.startswith("job.")):
            effects[payload["partner_event"]] += 1
        elif row.type == SCAN_KIND and payload.get("event"):
            effects[payload["event"]] += 1
    return effects


def queued_notifications(redis_url: str) -> Counter:
    """Notification messages waiting on the notify queue, per (order, milestone, channel)."""
    client = redis.Redis.from_url(redis_url)
    keys: Counter = Counter()
    for raw in client.hvals("dramatiq:notify.msgs"):
        kwargs = json.loads(raw).get("kwargs", {})
        keys[(kwargs.get("order_id"), kwargs.get("milestone"), kwargs.get("channel"))] += 1
    return keys


def _plain(counts: Counter) -> dict[str, int]:
    return {str(k): v for k, v in sorted(counts.items())}


def carrier_ledger(w: World) -> dict:
    return httpx.get(f"{w.carrier.url}/sim/ledger", timeout=10).json()


# ---- check 1: the storm -----------------------------------------------------------------------------------------


def webhook_storm(ctx: Context) -> list[Figure]:
    """N distinct events (half partner job statuses, half carrier scans) × 5 copies, shuffled, 10 % sent after
    their entity's later events, posted by 50 threads → exactly N effects, every delivery 2xx, nothing backwards."""
    name = "webhooks-dup"
    entities = ctx.pick(25, 250)  # jobs at the partner, and as many shipments: N = 2 × 4 × entities
    copies, threads, late_share = 5, 50, 0.10
    rng = random.Random(20261127)
    with world(ctx, partner_orders=entities // 5, units=5, shipments=entities) as w:
        events: list[Event] = []
        for job in w.jobs:
            at = now_utc()
            for step, status in enumerate(PARTNER_STEPS):
                event_id, body = partner_event(job, status, at=at + timedelta(seconds=step), sim_url=w.partner_url)
                events.append(Event("partner", job.id, status, step, signed(job.partner_id, event_id, body)))
        for shipment in w.shipments:
            for step, status in enumerate(CARRIER_STEPS):
                event_id, body = carrier_event(shipment, status, step=step)
                events.append(Event("carrier", shipment["shipment_id"], status, step,
                                    carrier_signed(event_id, body)))
        deliveries, late = storm_schedule(events, copies=copies, late_share=late_share, rng=rng)
        n = len(events)

        started = time.monotonic()
        results = post_all(w.system.api_url, deliveries, threads=threads)
        posted_s = time.monotonic() - started
        applied_s = wait_applied(w, n)

        with w.engine.connect() as conn:
            inbox = Counter(conn.execute(select(t.webhook_inbox.c.status)).scalars())
            changes = status_changes(conn)
            effects = effects_per_event(conn)
            jobs = Counter(conn.execute(select(t.print_jobs.c.status)
                                        .where(t.print_jobs.c.id.in_([j.id for j in w.jobs]))).scalars())
            shipments = Counter(conn.execute(select(t.shipments.c.status)).scalars())
        partner = sim_ledger(w.partner_url)
        carrier = carrier_ledger(w)
        notes = queued_notifications(ctx.redis_url)

    ids = {e.delivery.event_id for e in events}
    ok = sum(1 for code, _, _ in results if 200 <= code < 300)
    accepted = sum(1 for code, answer, _ in results if code == 200 and answer == "accepted")
    counted = sum(effects[i] for i in ids)
    duplicated = sum(effects[i] - 1 for i in ids if effects[i] > 1)
    missing = sum(1 for i in ids if effects[i] == 0)
    backwards, illegal = backwards_and_illegal(changes)
    late_recorded = len(late)
    latencies = sorted(s for _, _, s in results)
    shipping = sum(n for (_, milestone, _), n in notes.items() if milestone in ("shipped", "delivered"))
    repeated = sum(n - 1 for n in notes.values() if n > 1)
    return [
        Figure(test=name, figure=f"{len(deliveries):,} deliveries of {n:,} events ({copies} copies, {threads} "
                                 f"concurrent, {late_recorded} sent late): 2xx {percent(ok, len(deliveries))}",
               pass_figure="100 % 2xx", passed=ok == len(deliveries)),
        count_figure(name, "deliveries accepted as new (the rest answered duplicate)", accepted, n),
        count_figure(name, "inbox rows processed", inbox.get("processed", 0), n),
        Figure(test=name, figure=f"effects {counted:,} (duplicated {duplicated}, missing {missing})",
               pass_figure=f"= {n:,}, 0 duplicated, 0 missing",
               passed=counted == n and duplicated == 0 and missing == 0),
        Figure(test=name, figure=f"state moves backwards: {len(backwards)}; illegal transitions: {len(illegal)}",
               pass_figure="0; 0", passed=not backwards and not illegal),
        Figure(test=name, figure=f"jobs {_plain(jobs)}; shipments {_plain(shipments)}",
               pass_figure=f"all {len(w.jobs)} printed; all {len(w.shipments)} delivered",
               passed=jobs == {JobStatus.PRINTED: len(w.jobs)}
               and shipments == {ShipmentStatus.DELIVERED: len(w.shipments)}),
        Figure(test=name, figure=f"partner sim ledger: {partner['jobs_created']} jobs created, "
                                 f"{partner['duplicate_creates']} duplicates",
               pass_figure=f"{len(w.jobs)} created, 0 duplicates",
               passed=(partner["jobs_created"], partner["duplicate_creates"]) == (len(w.jobs), 0)),
        Figure(test=name, figure=f"carrier sim ledger: {carrier['labels_bought']} labels bought, "
                                 f"{len(carrier['double_bought_references'])} double-bought",
               pass_figure=f"{len(w.shipments)} bought, 0 double-bought",
               passed=(carrier["labels_bought"], len(carrier["double_bought_references"])) == (len(w.shipments), 0)),
        Figure(test=name, figure=f"shipped/delivered notifications queued {shipping} (repeats of an order + "
                                 f"milestone + channel, any milestone: {repeated})",
               pass_figure=f"{4 * len(w.shipments)} (2 milestones × 2 channels), 0 repeats",
               passed=shipping == 4 * len(w.shipments) and repeated == 0),
        Figure(test=name, figure=f"posted in {posted_s:.1f} s (p50 {latencies[len(latencies) // 2] * 1000:.0f} ms, "
                                 f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.0f} ms); applied "
                                 f"{applied_s:.1f} s later", pass_figure="(reported)", passed=True),
    ]


# ---- check 2: forgeries -----------------------------------------------------------------------------------------


def _partner_forgery(kind: str, genuine: Delivery, rng: random.Random) -> Delivery:
    partner = genuine.path.rsplit("/", 1)[-1]
    other = "acme-columbus" if partner != "acme-columbus" else "spree-berlin"
    headers, body, path = dict(genuine.headers), genuine.body, genuine.path
    good = headers["X-Partner-Signature"]
    if kind == "wrong secret":
        headers["X-Partner-Signature"] = signature(f"whsec_{rng.randbytes(8).hex()}", body)
    elif kind == "another partner's secret":
        headers["X-Partner-Signature"] = signature(f"whsec_dev_{other}", body)
    elif kind == "tampered body":
        body = body.replace(b'"status":"printed"', b'"status":"cancelled"')
    elif kind == "re-serialised body":
        body = json.dumps(json.loads(body), indent=1).encode()
    elif kind == "sent to another partner":
        path = f"/webhooks/partners/{other}"
    elif kind == "unknown partner":
        path, headers["X-Partner-Signature"] = "/webhooks/partners/mallory-print", signature(
            "whsec_dev_mallory-print", body)
    elif kind == "no sha256= prefix":
        headers["X-Partner-Signature"] = good.removeprefix("sha256=")
    elif kind == "truncated signature":
        headers["X-Partner-Signature"] = good[:-8]
    elif kind == "sha1 signature":
        headers["X-Partner-Signature"] = "sha1=" + hmac.new(f"whsec_dev_{partner}".encode(), body,
                                                            hashlib.sha1).hexdigest()
    elif kind == "empty signature":
        headers["X-Partner-Signature"] = ""
    elif kind == "unsigned":
        del headers["X-Partner-Signature"]
    elif kind == "replayed under a new event id":
        headers["X-Partner-Event-Id"] = f"evt_{rng.randbytes(12).hex()}"
    else:
        raise ValueError(kind)
    return replace(genuine, path=path, headers=headers, body=body)


def _carrier_forgery(kind: str, genuine: Delivery, rng: random.Random) -> Delivery:
    headers, body = dict(genuine.headers), genuine.body
    good = headers["X-Hmac-Signature"]
    if kind == "wrong secret":
        headers["X-Hmac-Signature"] = sign_webhook(body, f"whsec_{rng.randbytes(8).hex()}")
    elif kind == "tampered body":
        body = body.replace(b'"status":"delivered"', b'"status":"return_to_sender"', 1).replace(
            b'"status":"in_transit"', b'"status":"failure"', 1)
    elif kind == "re-serialised body":
        body = json.dumps(json.loads(body), indent=1).encode()
    elif kind == "no algorithm prefix":
        headers["X-Hmac-Signature"] = good.removeprefix("hmac-sha256-hex=")
    elif kind == "truncated signature":
        headers["X-Hmac-Signature"] = good[:-8]
    elif kind == "empty signature":
        headers["X-Hmac-Signature"] = ""
    elif kind == "unsigned":
        del headers["X-Hmac-Signature"]
    elif kind == "lower-case header with a wrong secret":
        del headers["X-Hmac-Signature"]
        headers["x-hmac-signature"] = sign_webhook(body, "whsec_guess")
    else:
        raise ValueError(kind)
    return replace(genuine, headers=headers, body=body)


def shopify_order(artwork_id: str, order_no: int) -> dict:
    return {"id": order_no, "name": f"#{order_no}", "email": "bob@example.com", "phone": "+1 555 0100",
            "customer": {"first_name": "Bob", "last_name": "Norman", "email": "bob@example.com"},
            "shipping_address": {"first_name": "Bob", "last_name": "Norman", "address1": "Chestnut Street 92",
                                 "city": "Louisville", "province_code": "KY", "zip": "40202", "country_code": "US"},
            "shipping_lines": [{"code": "standard", "title": "Standard"}],
            "line_items": [{"sku": "MUG-SUB-11OZ-WHT", "quantity": 1,
                            "properties": [{"name": "_artwork_id", "value": artwork_id},
                                           {"name": "text:name", "value": "Bob"}]}]}


def shopify_signed(payload: dict, webhook_id: str, *, secret: str = SHOPIFY_SECRET) -> Delivery:
    raw = json.dumps(payload).encode()
    digest = base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest()).decode()
    return Delivery(path=SHOPIFY_PATH, body=raw, event_id=webhook_id, headers={
        "Content-Type": "application/json", "X-Shopify-Hmac-Sha256": digest, "X-Shopify-Webhook-Id": webhook_id})


def _shopify_forgery(kind: str, genuine: Delivery, rng: random.Random) -> Delivery:
    headers, body = dict(genuine.headers), genuine.body
    if kind == "wrong secret":
        headers["X-Shopify-Hmac-Sha256"] = base64.b64encode(hmac.new(rng.randbytes(8), body,
                                                                     hashlib.sha256).digest()).decode()
    elif kind == "tampered body":
        body = body.replace(b'"quantity": 1', b'"quantity": 9')
    elif kind == "re-serialised body":
        body = json.dumps(json.loads(body), indent=1).encode()
    elif kind == "hex instead of base64":
        headers["X-Shopify-Hmac-Sha256"] = hmac.new(SHOPIFY_SECRET.encode(), body, hashlib.sha256).hexdigest()
    elif kind == "empty signature":
        headers["X-Shopify-Hmac-Sha256"] = ""
    elif kind == "unsigned":
        del headers["X-Shopify-Hmac-Sha256"]
    else:
        raise ValueError(kind)
    headers["X-Shopify-Webhook-Id"] = f"wh-forged-{rng.randbytes(8).hex()}"
    return replace(genuine, headers=headers, body=body)


PARTNER_FORGERIES = ("wrong secret", "another partner's secret", "tampered body", "re-serialised body",
                     "sent to another partner", "unknown partner", "no sha256= prefix", "truncated signature",
                     "sha1 signature", "empty signature", "unsigned", "replayed under a new event id")
CARRIER_FORGERIES = ("wrong secret", "tampered body", "re-serialised body", "no algorithm prefix",
                     "truncated signature", "empty signature", "unsigned", "lower-case header with a wrong secret")
SHOPIFY_FORGERIES = ("wrong secret", "tampered body", "re-serialised body", "hex instead of base64",
                     "empty signature", "unsigned")
UNSIGNED_LOGGED = "unsigned/malformed refusals (422) logged"
REFUSAL_LOG = re.compile(r"(webhook refused|webhook .* refused)")


def forged_webhooks(ctx: Context) -> list[Figure]:
    """Forged, tampered, unsigned and replayed deliveries to the partner, carrier and Shopify webhooks → every
    one refused (4xx) or, for an exact replay of a delivered event, acknowledged as a duplicate; 0 effects."""
    name = "webhooks-forged"
    total = ctx.pick(300, 3000)
    rng = random.Random(1127)
    with world(ctx, partner_orders=2, units=2, shipments=2) as w:
        art = w.harness.upload()["id"]
        partner_genuine = []
        for job in w.jobs:
            event_id, body = partner_event(job, "printed", at=now_utc(), sim_url=w.partner_url)
            partner_genuine.append(signed(job.partner_id, event_id, body))
        carrier_genuine = []
        for shipment in w.shipments:
            for step, status in ((1, "in_transit"), (3, "delivered")):
                carrier_genuine.append(carrier_signed(*carrier_event(shipment, status, step=step)))
        shopify_genuine = [shopify_signed(shopify_order(art, 900_000 + n), f"wh-{uuid.uuid4().hex}")
                           for n in range(3)]
        # a first genuine delivery of some events, so replays have something to replay
        replayed = partner_genuine[:1] + carrier_genuine[:1] + shopify_genuine[:1]
        first = post_all(w.system.api_url, replayed, threads=3)
        assert all(code in (200, 201) for code, _, _ in first), first
        wait_applied(w, 2)
        with w.engine.connect() as conn:
            before = _effect_counts(conn)

        per_kind = [("partner", k) for k in PARTNER_FORGERIES] + [("carrier", k) for k in CARRIER_FORGERIES] \
            + [("shopify", k) for k in SHOPIFY_FORGERIES] + [("partner", "exact replay"),
                                                              ("carrier", "exact replay"),
                                                              ("shopify", "exact replay"),
                                                              ("shopify", "replayed order under a new webhook id")]
        forged: list[tuple[str, str, Delivery]] = []
        while len(forged) < total:
            source, kind = per_kind[len(forged) % len(per_kind)]
            if kind == "exact replay":
                delivery = {"partner": replayed[0], "carrier": replayed[1], "shopify": replayed[2]}[source]
            elif kind == "replayed order under a new webhook id":
                delivery = replace(replayed[2], headers=replayed[2].headers | {
                    "X-Shopify-Webhook-Id": f"wh-replay-{rng.randbytes(8).hex()}"})
                delivery = shopify_signed(json.loads(replayed[2].body), delivery.headers["X-Shopify-Webhook-Id"])
            elif source == "partner":
                delivery = _partner_forgery(kind, rng.choice(partner_genuine), rng)
            elif source == "carrier":
                delivery = _carrier_forgery(kind, rng.choice(carrier_genuine), rng)
            else:
                delivery = _shopify_forgery(kind, rng.choice(shopify_genuine), rng)
            forged.append((source, kind, delivery))
        rng.shuffle(forged)
        log_before = _log_text(w)

        results = post_all(w.system.api_url, [d for _, _, d in forged], threads=24)
        time.sleep(1.0)  # let any message that was (wrongly) queued be applied before counting
        wait_applied(w, 2)
        with w.engine.connect() as conn:
            after = _effect_counts(conn)
        logged = len(REFUSAL_LOG.findall(_log_text(w)[len(log_before):]))

    replays = [(s, k, r) for (s, k, _), r in zip(forged, results, strict=True) if "replay" in k]
    spoofs = [(s, k, r) for (s, k, _), r in zip(forged, results, strict=True) if "replay" not in k]
    refused = [x for x in spoofs if 400 <= x[2][0] < 500]
    wrongly = Counter((s, k, r[0]) for s, k, r in spoofs if not 400 <= r[0] < 500)
    # a replay is fine refused (4xx), or acknowledged without a new effect: "duplicate" from the partner and carrier
    # endpoints, 200 (the existing order, not 201 for a new one) from Shopify's
    replay_ok = [x for x in replays if 400 <= x[2][0] < 500 or (x[2][0] == 200 and (
        x[2][1] == "duplicate" or x[0] == "shopify"))]
    by_code = Counter(r[0] for _, _, r in spoofs)
    signature_refusals = sum(1 for _, _, r in spoofs if r[0] == 401)
    changed = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    return [
        Figure(test=name, figure=f"forged/tampered/unsigned refused {len(refused):,}/{len(spoofs):,} "
                                 f"({percent(len(refused), len(spoofs))}; {dict(sorted(by_code.items()))})",
               pass_figure="100 % 4xx", passed=len(refused) == len(spoofs)),
        Figure(test=name, figure=f"replays {len(replays):,}: answered as refused or duplicate {len(replay_ok):,}",
               pass_figure=f"= {len(replays):,}", passed=len(replay_ok) == len(replays)),
        Figure(test=name, figure=f"effects of {len(forged):,} deliveries: {changed or 'none'}",
               pass_figure="none (inbox, timeline, orders, jobs, shipments unchanged)", passed=not changed),
        Figure(test=name, figure=f"bad-signature refusals (401) logged: {min(logged, signature_refusals):,} of "
                                 f"{signature_refusals:,}", pass_figure="each logged",
               passed=logged >= signature_refusals),
        Figure(test=name, figure=f"{UNSIGNED_LOGGED}: {max(0, logged - signature_refusals):,} of "
                                 f"{len(refused) - signature_refusals:,}", pass_figure="each logged",
               passed=logged >= len(refused)),
    ] + ([Figure(test=name, figure=f"not refused: {dict(wrongly)}", pass_figure="none", passed=False)]
         if wrongly else [])


def _effect_counts(conn) -> dict[str, int]:
    return {
        "partner/carrier inbox rows": conn.scalar(select(func.count()).where(
            t.webhook_inbox.c.source.like("partner:%") | t.webhook_inbox.c.source.like("carrier:%"))),
        "timeline lines": conn.scalar(select(func.count()).select_from(t.order_events)),
        "orders": conn.scalar(select(func.count()).select_from(t.orders)),
        "jobs not submitted": conn.scalar(select(func.count()).where(t.print_jobs.c.status != "submitted")),
        "shipments moved": conn.scalar(select(func.count()).where(t.shipments.c.status != "purchased")),
    }


def _log_text(w: World) -> str:
    path = w.system.logs / "api.log"
    return path.read_text(errors="replace") if path.exists() else ""
