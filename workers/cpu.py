"""Stage CPU: how much CPU each actor (and each scheduler job) uses, for the pipeline benchmark.

Opt-in (`PRESSROOM_STAGE_CPU=1`): the thread's own CPU time (`time.thread_time`, C code that releases the GIL
included) from a message's start to its end, added up per actor in Redis, where `python -m bench.pipeline`
reads it. Process CPU minus these sums is the machinery around the actors (fetching, acks, heartbeats).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import dramatiq
import redis
from dramatiq.middleware import Middleware

log = logging.getLogger(__name__)
MS_KEY = "pressroom:cpu:ms"
COUNT_KEY = "pressroom:cpu:count"


def record(client: redis.Redis, name: str, cpu_s: float) -> None:
    try:
        client.pipeline(transaction=False).hincrbyfloat(MS_KEY, name, cpu_s * 1000).hincrby(COUNT_KEY, name, 1) \
            .execute()
    except redis.RedisError as error:  # a measurement never fails the work
        log.warning("stage CPU not recorded for %s: %s", name, error)


@contextmanager
def measured(client: redis.Redis | None, name: str) -> Iterator[None]:
    """Add the body's thread CPU time to `name` (nothing when `client` is None)."""
    started = time.thread_time()
    try:
        yield
    finally:
        if client is not None:
            record(client, name, time.thread_time() - started)


class StageCpu(Middleware):
    """Adds each message's thread CPU time to its actor's total."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.local = threading.local()

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message) -> None:
        self.local.started = time.thread_time()

    def after_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message, *, result=None,
                              exception=None) -> None:
        started = getattr(self.local, "started", None)
        if started is not None:
            self.local.started = None
            record(self.client, message.actor_name, time.thread_time() - started)

    after_skip_message = after_process_message


def stage_cpu(client: redis.Redis) -> dict[str, tuple[int, float]]:
    """Per actor or job: (count, CPU seconds) recorded so far."""
    ms, counts = client.hgetall(MS_KEY), client.hgetall(COUNT_KEY)
    return {name.decode(): (int(counts.get(name, 0)), float(value) / 1000) for name, value in ms.items()}
