"""The stage-lag middleware records how long each message waited before a worker started it."""

from __future__ import annotations

import time

import dramatiq
import redis
from dramatiq.brokers.stub import StubBroker

from workers.lag import StageLag, lag_samples


def test_each_processed_message_leaves_its_wait_on_its_queue_and_only_the_last_n_are_kept(redis_url):
    # given a broker with the middleware keeping 3 samples per queue, and a message that waits 200 ms
    client = redis.Redis.from_url(redis_url)
    broker = StubBroker()
    broker.add_middleware(StageLag(client, keep=3))
    broker.emit_after("process_boot")

    @dramatiq.actor(queue_name="render", broker=broker)
    def render_asset(order_id: str) -> None:
        pass

    for n in range(4):
        render_asset.send(f"ord_{n}")
    time.sleep(0.2)
    # when a worker processes them
    worker = dramatiq.Worker(broker, worker_timeout=100)
    worker.start()
    broker.join("render")
    worker.join()
    worker.stop()
    # then the render queue holds the last three waits, each at least the 200 ms they sat in the queue
    waits = lag_samples(client, "render")
    assert len(waits) == 3 and all(200 <= w < 60_000 for w in waits)
    assert lag_samples(client, "qa") == []
