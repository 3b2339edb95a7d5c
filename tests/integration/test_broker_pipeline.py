"""Several stage messages in one Redis round trip: each runs the broker's middleware and lands as `send` puts it."""

from __future__ import annotations

import json

import dramatiq
import pytest
import redis

from adapters.broker import DramatiqBus, make_broker
from core.commands import RenderAsset, SendNotification
from tests.conftest import settings_for


class Recorder(dramatiq.Middleware):
    def __init__(self) -> None:
        self.before: list[str] = []
        self.after: list[str] = []

    def before_enqueue(self, broker, message, delay) -> None:
        self.before.append(message.options["redis_message_id"])

    def after_enqueue(self, broker, message, delay) -> None:
        self.after.append(message.options["redis_message_id"])


def queued(redis_url: str, queue: str) -> list[dict]:
    client = redis.Redis.from_url(redis_url)
    return [json.loads(client.hget(f"dramatiq:{queue}.msgs", i)) for i in client.lrange(f"dramatiq:{queue}", 0, -1)]


COMMANDS = [RenderAsset(order_id="ord_1"), SendNotification(order_id="ord_1", milestone="received", channel="email"),
            SendNotification(order_id="ord_1", milestone="received", channel="sms")]


@pytest.mark.integration
def test_send_many_puts_each_message_on_its_queue_through_the_middleware(redis_url):
    # given the API's broker with a middleware that records enqueues
    broker = make_broker(settings_for("sqlite://", redis_url=redis_url))
    recorder = Recorder()
    broker.add_middleware(recorder)
    # when three commands are sent in one round trip
    failed = DramatiqBus(broker).send_many(COMMANDS)
    # then none failed, each went through before_ and after_enqueue, and each is on its queue as `send` puts it
    assert failed == []
    assert len(recorder.before) == 3 and recorder.after == recorder.before
    [render] = queued(redis_url, "render")
    assert render["actor_name"] == "render.render_asset" and render["kwargs"] == {"order_id": "ord_1"}
    notify = queued(redis_url, "notify")
    assert [m["kwargs"]["channel"] for m in notify] == ["email", "sms"]
    assert {m["options"]["redis_message_id"] for m in [render, *notify]} == set(recorder.before)


@pytest.mark.integration
def test_send_many_loads_the_dispatch_script_when_redis_does_not_know_it(redis_url):
    # given a broker whose dispatch script Redis does not know (as after a Redis restart)
    broker = make_broker(settings_for("sqlite://", redis_url=redis_url))
    broker.scripts["dispatch"].sha = "0" * 40
    # when three commands are sent in one round trip, then they all arrive all the same
    assert DramatiqBus(broker).send_many(COMMANDS) == []
    assert len(queued(redis_url, "render")) == 1 and len(queued(redis_url, "notify")) == 2


@pytest.mark.integration
def test_send_many_reports_every_message_it_could_not_send(redis_url):
    # given a broker on a Redis that does not answer
    broker = make_broker(settings_for("sqlite://", redis_url="redis://127.0.0.1:1/0"))
    # when three commands are sent, then all three come back with their error, and nothing is raised
    failed = DramatiqBus(broker).send_many(COMMANDS)
    assert [command for command, _ in failed] == COMMANDS
    assert all(isinstance(error, redis.exceptions.ConnectionError) for _, error in failed)
