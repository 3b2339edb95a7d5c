"""The reconciler re-sends a stage message only when it was lost, not while the stage is merely behind.

On PostgreSQL and the real Redis broker: a render queue that still holds the order's message (or an older one,
waiting or taken by a live worker) means the order is late, and a second message would only queue behind it.
"""

from __future__ import annotations

import json
from datetime import timedelta

import dramatiq
import redis

from adapters.broker import oldest_message_at
from core.services.reconcile import reconcile
from tests.integration.test_intake_on_postgres import RedisHarness, render_queue


def reconcile_with_queues(api: RedisHarness, client: redis.Redis, *, after_s: float) -> int:
    deadlines = api.services.settings.stage_deadlines_s
    return reconcile(api.services.uow(), now=api.services.now() + timedelta(seconds=after_s), deadlines_s=deadlines,
                     oldest_message=lambda queue: oldest_message_at(client, queue))


def test_an_order_whose_render_message_still_waits_is_not_re_driven_however_late(pg_url, redis_url, tmp_path):
    # given an accepted order whose render message is still waiting on the render queue (the stage is behind)
    api = RedisHarness(pg_url, tmp_path)
    client = redis.Redis.from_url(redis_url)
    order = api.client.post("/v1/orders", json=api.order_body(api.upload()["id"])).json()
    late = api.services.settings.stage_deadlines_s["accepted"] + 600
    # when the reconciler runs long after the stage deadline, nothing is re-sent
    assert reconcile_with_queues(api, client, after_s=late) == 0
    assert [m["kwargs"] for m in render_queue(redis_url)] == [{"order_id": order["id"]}]
    # and when the message is gone from the queue (taken, and lost with its worker), it is re-sent
    [message_id] = client.lrange("dramatiq:render", 0, -1)
    client.delete("dramatiq:render")
    client.hdel("dramatiq:render.msgs", message_id)
    assert reconcile_with_queues(api, client, after_s=late) == 1
    assert [m["kwargs"] for m in render_queue(redis_url)] == [{"order_id": order["id"]}]


def test_a_message_a_live_worker_has_taken_still_counts_as_on_the_queue(pg_url, redis_url, tmp_path):
    # given an accepted order whose render message a live worker has taken and not yet acknowledged
    api = RedisHarness(pg_url, tmp_path)
    client = redis.Redis.from_url(redis_url)
    api.client.post("/v1/orders", json=api.order_body(api.upload()["id"]))
    message_id = client.lpop("dramatiq:render")
    client.zadd("dramatiq:__heartbeats__", {"worker-1": 1})
    client.sadd("dramatiq:__acks__.worker-1.render", message_id)
    # when the reconciler runs past the deadline, it leaves the order to that worker
    late = api.services.settings.stage_deadlines_s["accepted"] + 600
    assert reconcile_with_queues(api, client, after_s=late) == 0


def test_a_lost_message_is_re_driven_even_while_newer_work_waits_on_its_queue(pg_url, redis_url, tmp_path):
    # given an accepted order whose render message was lost, and a newer message waiting on the render queue
    api = RedisHarness(pg_url, tmp_path)
    client = redis.Redis.from_url(redis_url)
    order = api.client.post("/v1/orders", json=api.order_body(api.upload()["id"])).json()
    client.flushdb()
    newer = dramatiq.Message(queue_name="render", actor_name="render.render_asset", args=(),
                             kwargs={"order_id": "ord_newer"}, options={},
                             message_timestamp=int((api.services.now() + timedelta(minutes=5)).timestamp() * 1000))
    api.services.bus.broker.enqueue(newer)
    # when the reconciler runs past the deadline, the lost one is sent again (behind the newer one)
    late = api.services.settings.stage_deadlines_s["accepted"] + 600
    reconcile_with_queues(api, client, after_s=late)
    assert [m["kwargs"]["order_id"] for m in render_queue(redis_url)] == ["ord_newer", order["id"]]


def test_the_oldest_message_of_an_empty_queue_is_none(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.zadd("dramatiq:__heartbeats__", {"worker-1": 1})
    assert oldest_message_at(client, "render") is None
    client.hset("dramatiq:render.msgs", "m1", json.dumps({"message_timestamp": 1_700_000_000_000}))
    client.rpush("dramatiq:render", "m1")
    assert oldest_message_at(client, "render").timestamp() == 1_700_000_000
