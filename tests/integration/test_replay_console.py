"""The replay console's service on PostgreSQL and real Redis: a message that kept failing is dead-lettered by a
real Dramatiq worker, listed, replayed once; a rejected carrier webhook is re-applied once through its actor;
every replay is audited, and a replay repeated finds nothing to do."""

from __future__ import annotations

import importlib
import json
import secrets
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import dramatiq
import pytest
import redis
from dramatiq import Worker
from sqlalchemy import insert, select, text
from sqlalchemy.exc import DatabaseError

import db
import workers.bootstrap
from adapters.broker import make_broker, queue_stats
from adapters.deadletters import RedisDeadLetters
from adapters.ids import TimeOrderedIds
from core.replay import REPLAY, ItemKind, ReplayFilter
from core.services import replay as service
from core.services.shipping import SCAN_KIND
from db import tables as t
from sims.carrier import sign_webhook
from tests.conftest import TEST_KEYS, settings_for
from tests.integration.test_intake_on_postgres import RedisHarness

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

EVERYTHING = ReplayFilter()
FIXED, RUNS = "replay-test:fixed", "replay-test:runs:{}"


def wait_for(predicate, *, timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:.0f}s")
        time.sleep(0.05)


def audit_rows(engine) -> list:
    a = t.audit_log
    with engine.connect() as conn:
        return conn.execute(select(a.c.actor, a.c.action, a.c.before, a.c.after).where(a.c.action == REPLAY)
                            .order_by(a.c.id)).all()


@pytest.fixture
def stage(redis_url, monkeypatch):
    """The real Redis broker (stage queues declared) with an inspection actor that fails until it is fixed,
    and a Dramatiq worker on its queue."""
    monkeypatch.setattr(dramatiq.broker, "global_broker", dramatiq.broker.global_broker)  # restored after
    broker = make_broker(settings_for("sqlite://"))
    client = redis.Redis.from_url(redis_url)

    @dramatiq.actor(broker=broker, queue_name="qa", actor_name="qa.inspect_flaky", max_retries=1, min_backoff=10,
                    max_backoff=20)
    def inspect_flaky(job_id: str) -> None:
        if not client.exists(FIXED):
            raise RuntimeError(f"camera offline while inspecting {job_id}")
        client.incr(RUNS.format(job_id))

    worker = Worker(broker, queues={"qa"}, worker_threads=1, worker_timeout=50)
    worker.start()
    yield broker, client, inspect_flaky
    worker.stop()


@pytest.fixture
def database(pg_url):
    """Sessions and an engine on a migrated, seeded PostgreSQL database."""
    db.configure(settings_for(pg_url))
    engine = db.make_engine(pg_url)
    yield db.make_session_factory(engine), engine
    engine.dispose()


def test_a_dead_letter_is_listed_replayed_once_and_a_second_replay_finds_nothing(stage, database):
    broker, client, inspect_flaky = stage
    sessions, engine = database
    dead_letters = RedisDeadLetters(client)
    # given an inspection that failed on its try and its retry (the camera was offline): a dead letter
    inspect_flaky.send_with_options(kwargs={"job_id": "job-7"})  # as DramatiqBus sends
    wait_for(lambda: client.zcard("dramatiq:qa.XQ") == 1, what="the message in qa's dead letters")
    assert [s.dead for s in queue_stats(client, ("qa",))] == [1]

    # when the ops manager filters and dry-runs, then it is listed with its actor, argument and error
    now = datetime.now(UTC)
    plan = service.dry_run(db.SqlUnitOfWork(sessions), dead_letters, ReplayFilter(stages=frozenset({"qa"})), now=now)
    [letter] = plan.replay
    assert (letter.kind, letter.actor, letter.summary, letter.retries) == (
        ItemKind.DEAD_LETTER, "qa.inspect_flaky", "job_id='job-7'", 1)
    assert letter.error == "RuntimeError: camera offline while inspecting job-7"
    for narrower in (ReplayFilter(actor="render"), ReplayFilter(error="timeout"), ReplayFilter(source="acme"),
                     ReplayFilter(min_age=timedelta(hours=1)), ReplayFilter(kinds=frozenset({ItemKind.WEBHOOK}))):
        assert service.dry_run(db.SqlUnitOfWork(sessions), dead_letters, narrower, now=now).count == 0
    assert client.zcard("dramatiq:qa.XQ") == 1  # a dry run changes nothing

    # when the camera is fixed and the dead letter replayed
    client.set(FIXED, 1)
    ids = TimeOrderedIds()
    outcome = service.replay(db.SqlUnitOfWork(sessions), dead_letters, EVERYTHING, actor="olga", now=now,
                             new_id=ids.new)
    # then the message runs once, and leaves neither the dead letters nor anything queued behind
    assert outcome.dead_letters == (letter.key,) and outcome.gone == ()
    wait_for(lambda: client.get(RUNS.format("job-7")) == b"1", what="the replayed inspection")
    broker.join("qa", timeout=20_000)
    assert client.zcard("dramatiq:qa.XQ") == 0 and client.hlen("dramatiq:qa.XQ.msgs") == 0
    assert client.hlen("dramatiq:qa.msgs") == 0

    # when the same selection is replayed again, and the old dead letter is pushed at the broker again
    again = service.replay(db.SqlUnitOfWork(sessions), dead_letters, EVERYTHING, actor="olga", now=now,
                           new_id=ids.new, chosen=[letter.key])
    assert not dead_letters.replay(letter, at=now)
    # then nothing is replayed and the inspection has still run once
    assert (again.count, again.run_id) == (0, None)
    broker.join("qa", timeout=20_000)
    assert client.get(RUNS.format("job-7")) == b"1"

    # and the one replay is audited: who, what, how many
    [row] = audit_rows(engine)
    assert (row.actor, row.after["dead_letters"], row.after["webhooks"]) == ("olga", 1, 0)
    assert [(i["key"], i["actor"], i["error"]) for i in row.before["items"]] == [
        (letter.key, "qa.inspect_flaky", "RuntimeError: camera offline while inspecting job-7")]


def test_two_consoles_replaying_the_same_dead_letter_enqueue_it_once(stage):
    broker, client, inspect_flaky = stage
    dead_letters = RedisDeadLetters(client)
    inspect_flaky.send_with_options(kwargs={"job_id": "job-8"})
    wait_for(lambda: client.zcard("dramatiq:qa.XQ") == 1, what="the dead letter")
    [letter] = dead_letters.dead_letters()
    client.set(FIXED, 1)
    # when two consoles, each having listed it, replay it
    results = [dead_letters.replay(letter, at=datetime.now(UTC)) for _ in range(2)]
    # then one moved it and the other found it gone; it ran once
    assert sorted(results) == [False, True]
    wait_for(lambda: client.get(RUNS.format("job-8")) == b"1", what="the replayed inspection")
    broker.join("qa", timeout=20_000)
    assert client.get(RUNS.format("job-8")) == b"1"


def _tracker_event(code: str) -> tuple[bytes, dict[str, str]]:
    event = {"id": f"evt_{secrets.token_hex(12)}", "object": "Event", "description": "tracker.updated",
             "result": {"object": "Tracker", "tracking_code": code, "status": "in_transit", "carrier": "USPS",
                        "tracking_details": [{"message": "Departed facility", "status": "in_transit",
                                              "datetime": "2026-11-27T10:00:00Z"}]}}
    body = json.dumps(event, separators=(",", ":")).encode()
    return body, {"Content-Type": "application/json", "X-Hmac-Signature": sign_webhook(body, "whsec_dev_easypost")}


@pytest.fixture
def tracking_worker(pg_url, redis_url, monkeypatch):
    """The real `tracking.apply_carrier_event` actor, on the real Redis broker, run by a Dramatiq worker."""
    environment = {**TEST_KEYS, "DATABASE_URL": pg_url, "REDIS_URL": redis_url, "PRESSROOM_PROMETHEUS": "0"}
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(workers.bootstrap, "_container", None)
    monkeypatch.setattr(dramatiq.broker, "global_broker", dramatiq.broker.global_broker)
    broker = workers.bootstrap.container().broker
    module = sys.modules.get("workers.shipping")
    shipping = importlib.reload(module) if module else importlib.import_module("workers.shipping")
    assert broker.get_actor("tracking.apply_carrier_event").fn is shipping.apply_carrier_event.fn
    worker = Worker(broker, queues={"tracking"}, worker_threads=1, worker_timeout=50)
    yield broker, worker
    worker.stop()


def test_a_rejected_carrier_scan_is_reapplied_once_when_its_shipment_is_known(pg_url, redis_url, tmp_path,
                                                                              tracking_worker):
    broker, worker = tracking_worker
    api = RedisHarness(pg_url, tmp_path)
    engine, sessions = api.services.engine, db.make_session_factory(api.services.engine)
    dead_letters = RedisDeadLetters(redis.Redis.from_url(redis_url))
    art = api.upload()
    order = api.client.post("/v1/orders", json=api.order_body(art["id"])).json()
    code = f"9400{uuid.uuid4().int % 10**12:012d}"
    # given a carrier scan that arrived before the label purchase was recorded: applied, it is rejected
    body, headers = _tracker_event(code)
    assert api.client.post("/webhooks/carrier/easypost", content=body, headers=headers).json() == {
        "status": "accepted"}
    worker.start()
    broker.join("tracking", timeout=20_000)
    w = t.webhook_inbox
    with engine.connect() as conn:
        inbox_id, status, error = conn.execute(select(w.c.id, w.c.status, w.c.error)).one()
    assert (status, error) == ("rejected", "unknown tracking code")

    # when the ops manager dry-runs failed webhooks, then the scan is listed under the carrier and its actor
    now = datetime.now(UTC)
    plan = service.dry_run(db.SqlUnitOfWork(sessions), dead_letters, ReplayFilter(source="easypost"), now=now)
    [item] = plan.replay
    assert (item.key, item.stage, item.actor, item.error) == (
        f"inbox:{inbox_id}", "tracking", "tracking.apply_carrier_event", "unknown tracking code")
    assert service.dry_run(db.SqlUnitOfWork(sessions), dead_letters, ReplayFilter(source="partner:"),
                           now=now).count == 0

    # and once the purchase is recorded, the scan is replayed, twice in a row while the worker is paused
    with engine.begin() as conn:
        conn.execute(insert(t.shipments).values(id="shp_replay", order_id=order["id"], status="purchased",
                                                carrier="USPS", tracking_code=code, created_at=now,
                                                status_changed_at=now, version=1))
    worker.stop()
    ids = TimeOrderedIds()
    first = service.replay(api.services.uow(), dead_letters, ReplayFilter(source="easypost"), actor="olga",
                           now=now, new_id=ids.new)
    second = service.replay(api.services.uow(), dead_letters, ReplayFilter(source="easypost"), actor="olga",
                            now=now + timedelta(seconds=5), new_id=ids.new)
    assert first.webhooks == (item.key,)
    assert (second.count, second.run_id) == (0, None)  # re-opened moments ago: being applied, not failed
    assert [m["kwargs"] for m in map(json.loads, redis.Redis.from_url(redis_url).hvals("dramatiq:tracking.msgs"))] \
        == [{"inbox_id": inbox_id}]  # the very command the API sends for a new delivery, once

    # then the worker applies it once: the parcel is in transit, one scan on the timeline, the row processed
    worker = Worker(broker, queues={"tracking"}, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        broker.join("tracking", timeout=20_000)
    finally:
        worker.stop()
    e = t.order_events
    with engine.connect() as conn:
        assert conn.execute(select(w.c.status, w.c.error)).one() == ("processed", None)
        assert conn.scalar(select(t.shipments.c.status).where(t.shipments.c.id == "shp_replay")) == "in_transit"
        scans = conn.execute(select(e.c.payload).where(e.c.order_id == order["id"], e.c.type == SCAN_KIND)).all()
    assert [(s.payload["tracking_code"], s.payload["applied"]) for s in scans] == [(code, True)]
    # and a later replay finds nothing: applied deliveries are not failed work
    assert service.dry_run(db.SqlUnitOfWork(sessions), dead_letters, EVERYTHING,
                           now=now + timedelta(hours=1)).count == 0
    [row] = audit_rows(engine)
    assert (row.actor, row.after["webhooks"], row.after["dead_letters"]) == ("olga", 1, 0)


def test_postgresql_refuses_to_change_or_remove_audit_rows(pg_url):
    engine = db.make_engine(pg_url)
    a = t.audit_log
    with engine.begin() as conn:
        conn.execute(insert(a).values(at=datetime.now(UTC), actor="olga", action="batch.hold", target_type="batch",
                                      target_id="b1", order_id=None, before={"status": "open"},
                                      after={"status": "held"}))
    for statement in ("UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
        with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    with engine.connect() as conn:
        assert conn.execute(select(a.c.actor)).scalars().all() == ["olga"]
    engine.dispose()
