"""Stage lag: how long each message waited between being enqueued (or due, for a retry) and starting.

Opt-in (`PRESSROOM_LAG_SAMPLES=N`): the middleware keeps each queue's last N waits in Redis, where the lag
benchmark (`python -m bench.lag`) reads them. One LPUSH and LTRIM per message, pipelined.
"""

from __future__ import annotations

import logging
import time

import dramatiq
import redis
from dramatiq.middleware import Middleware

log = logging.getLogger(__name__)
KEY = "pressroom:lag:{queue}"


class StageLag(Middleware):
    """Records, per queue, the milliseconds from a message's enqueue (or its retry's due time) to its start."""

    def __init__(self, client: redis.Redis, *, keep: int) -> None:
        self.client = client
        self.keep = keep

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message) -> None:
        due_ms = message.options.get("eta") or message.message_timestamp
        waited_ms = max(0.0, time.time() * 1000 - due_ms)
        key = KEY.format(queue=message.queue_name.removesuffix(".DQ"))
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.lpush(key, f"{waited_ms:.1f}").ltrim(key, 0, self.keep - 1).execute()
        except redis.RedisError as error:  # a measurement never fails a message
            log.warning("stage lag not recorded for %s: %s", message.message_id, error)


def lag_samples(client: redis.Redis, queue: str) -> list[float]:
    """The recorded waits of one queue, in milliseconds (newest first)."""
    return [float(v) for v in client.lrange(KEY.format(queue=queue), 0, -1)]
