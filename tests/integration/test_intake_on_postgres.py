"""Intake on PostgreSQL and real Redis: the render message is in Redis after commit; lost ones are re-driven."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import redis
from sqlalchemy import select, update

from adapters.broker import queue_stats
from core.services.reconcile import reconcile
from db import tables as t
from tests.conftest import ApiHarness, settings_for


class RedisHarness(ApiHarness):
    """The real app on PostgreSQL with the real Redis broker (no stub)."""

    def __init__(self, url: str, tmp_path) -> None:
        from fastapi.testclient import TestClient

        from adapters.payments import SimPayments
        from api.deps import build_services
        from api.main import create_app

        self.payments = SimPayments()
        self.services = build_services(settings_for(url, object_store_dir=str(tmp_path / "objects")),
                                       payments=self.payments)
        self.client = TestClient(create_app(self.services))


def render_queue(redis_url: str, queue: str = "render") -> list[dict]:
    client = redis.Redis.from_url(redis_url)
    ids = client.lrange(f"dramatiq:{queue}", 0, -1)
    return [json.loads(client.hget(f"dramatiq:{queue}.msgs", i)) for i in ids]


def test_an_accepted_order_puts_its_render_message_on_the_real_render_queue(pg_url, redis_url, tmp_path):
    api = RedisHarness(pg_url, tmp_path)
    art = api.upload()
    order = api.client.post("/v1/orders", json=api.order_body(art["id"])).json()
    [message] = render_queue(redis_url)
    assert message["actor_name"] == "render.render_asset" and message["kwargs"] == {"order_id": order["id"]}
    [render] = [s for s in queue_stats(redis.Redis.from_url(redis_url)) if s.queue == "render"]
    assert render.depth == 1 and render.oldest_age_s is not None
    assert api.client.get("/healthz").json() == {"status": "ok", "database": "ok", "redis": "ok"}


def test_a_refused_order_sends_no_message(pg_url, redis_url, tmp_path):
    api = RedisHarness(pg_url, tmp_path)
    body = api.order_body("art_nope")
    assert api.client.post("/v1/orders", json=body).status_code == 422
    assert render_queue(redis_url) == []


def test_the_reconciler_re_drives_an_order_whose_message_was_lost(pg_url, redis_url, tmp_path):
    # given an accepted order whose render message was lost (Redis flushed)
    api = RedisHarness(pg_url, tmp_path)
    art = api.upload()
    order = api.client.post("/v1/orders", json=api.order_body(art["id"])).json()
    redis.Redis.from_url(redis_url).flushdb()
    now = api.services.now()
    deadlines = replace(api.services.settings).stage_deadlines_s
    # when the reconciler runs before the deadline, nothing happens
    assert reconcile(api.services.uow(), now=now, deadlines_s=deadlines) == 0
    assert render_queue(redis_url) == []
    # and when it runs after the stage deadline, the message is sent again and the timeline says so
    later = now + timedelta(seconds=deadlines["accepted"] + 1)
    assert reconcile(api.services.uow(), now=later, deadlines_s=deadlines) == 1
    [message] = render_queue(redis_url)
    assert message["kwargs"] == {"order_id": order["id"]}
    with api.services.engine.connect() as conn:
        types = list(conn.scalars(select(t.order_events.c.type).where(t.order_events.c.order_id == order["id"])))
    assert types == ["order.received", "stage.redriven"]
    # and it is not re-driven again until another deadline has passed
    assert reconcile(api.services.uow(), now=later + timedelta(seconds=1), deadlines_s=deadlines) == 0


def test_orders_in_states_that_wait_on_the_outside_world_are_not_re_driven(pg_url, redis_url, tmp_path):
    api = RedisHarness(pg_url, tmp_path)
    art = api.upload()
    api.client.post("/v1/orders", json=api.order_body(art["id"]))
    redis.Redis.from_url(redis_url).flushdb()
    with api.services.engine.begin() as conn:
        conn.execute(update(t.orders).values(status="shipped"))
    far = api.services.now() + timedelta(days=30)
    reconcile(api.services.uow(), now=far, deadlines_s=api.services.settings.stage_deadlines_s)

    # no stage message: a shipped order waits on the carrier (its unsent "received" messages are re-queued,
    # which is the notify stage's own re-drive)
    assert [m["actor_name"] for q in ("render", "production", "shipping") for m in render_queue(redis_url, q)] == []
    assert {m["kwargs"]["milestone"] for m in render_queue(redis_url, "notify")} <= {"received"}
    with api.services.engine.connect() as conn:
        assert not conn.scalar(select(t.order_events.c.id).where(t.order_events.c.type == "stage.redriven"))
