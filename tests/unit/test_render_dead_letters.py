"""A render that keeps failing ends in the render queue's dead letters, with its error, after its retries."""

from __future__ import annotations

import importlib
import sys

import dramatiq
from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker

import workers.bootstrap
from tests.conftest import TEST_KEYS
from tests.unit.test_render_stage import place


def test_a_render_that_keeps_failing_lands_in_the_dead_letters_with_its_error(api, seeded_sqlite, redis_url,
                                                                             monkeypatch):
    # given an accepted order, and an object store that does not answer (nothing listens on port 9); Redis is
    # up, as in production (a design's render lock lives there)
    order_id = place(api)
    for key, value in {**TEST_KEYS, "DATABASE_URL": seeded_sqlite, "REDIS_URL": redis_url, "S3_BUCKET": "pressroom",
                       "S3_ENDPOINT_URL": "http://127.0.0.1:9", "S3_ACCESS_KEY_ID": "x",
                       "S3_SECRET_ACCESS_KEY": "y", "PRESSROOM_PROMETHEUS": "0"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(workers.bootstrap, "_container", None)
    broker = StubBroker()
    broker.emit_after("process_boot")
    monkeypatch.setattr(dramatiq.broker, "global_broker", broker)  # restored after the test
    # the real actor, declared on the stub broker
    render = importlib.reload(sys.modules["workers.render"]) if "workers.render" in sys.modules else \
        importlib.import_module("workers.render")
    monkeypatch.setattr(workers.bootstrap, "make_broker", lambda settings, prometheus=False: broker)
    # when its render message keeps failing (retries shortened for the test: the actor's own policy is 8)
    render.render_asset.send_with_options(kwargs={"order_id": order_id}, max_retries=2, min_backoff=10,
                                          max_backoff=20)
    worker = Worker(broker, worker_timeout=50)
    worker.start()
    try:
        broker.join("render", fail_fast=False, timeout=60_000)
        worker.join()
    finally:
        worker.stop()
    # then the message is a dead letter carrying the error, and the order is untouched (not on hold)
    [dead] = broker.dead_letters
    assert dead.kwargs == {"order_id": order_id}
    assert "StorageUnavailable" in dead.options["traceback"]
    assert dead.options["retries"] == 3
