"""Dramatiq on Redis: the broker (heartbeat tuned for fast redelivery), the message bus, queue statistics."""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Sequence

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis

from core.commands import QUEUES, StageCommand, actor_name
from core.settings import Settings

log = logging.getLogger(__name__)
NAMESPACE = "dramatiq"


def make_broker(settings: Settings, *, prometheus: bool = False) -> RedisBroker:
    """The process's broker, declared with every stage queue and set as Dramatiq's global broker.

    The heartbeat timeout and maintenance chance are lowered from Dramatiq's defaults (60 s, 0.1 %) so a
    SIGKILLed worker's unacked messages go back on their queue within seconds (GOTCHAS: Dramatiq).
    """
    broker = RedisBroker(url=settings.redis_url, namespace=NAMESPACE,
                         heartbeat_timeout=settings.broker_heartbeat_timeout_ms,
                         maintenance_chance=settings.broker_maintenance_chance)
    if prometheus:
        # The exporter runs in a process the Dramatiq CLI forks, which reads its bind address from the
        # environment (default 0.0.0.0): start workers with `python -m workers`, which sets it to loopback.
        from dramatiq.middleware.prometheus import Prometheus

        broker.add_middleware(Prometheus())
    for queue in QUEUES:
        broker.declare_queue(queue)
    dramatiq.set_broker(broker)
    return broker


class DramatiqBus:
    """Sends stage commands by actor name, so the sender needs no import of the worker's code."""

    def __init__(self, broker: dramatiq.Broker) -> None:
        self.broker = broker

    def send(self, command: StageCommand) -> None:
        self.broker.enqueue(self._message(command))

    def send_many(self, commands: Sequence[StageCommand]) -> list[tuple[StageCommand, Exception]]:
        """Send several commands as `send` would, each through the broker's enqueue middleware, in one Redis
        round trip (a pipeline of Dramatiq's own dispatch script); returns the ones not sent, with their error.

        A checkout sends three (render, e-mail, SMS): one EVALSHA round trip each was ~7 % of its API CPU.
        On another broker (the tests' StubBroker) they are sent one by one.
        """
        failed: list[tuple[StageCommand, Exception]] = []
        broker = self.broker
        if len(commands) < 2 or not isinstance(broker, RedisBroker):
            for command in commands:
                try:
                    self.send(command)
                except Exception as error:
                    failed.append((command, error))
            return failed
        ready = []
        for command in commands:
            # what RedisBroker.enqueue does before its dispatch: a Redis id of its own, then the middleware
            message = self._message(command).copy(options={"redis_message_id": str(uuid.uuid4())})
            try:
                broker.emit_before("enqueue", message, None)
            except Exception as error:
                failed.append((command, error))
                continue
            ready.append((command, message, message.encode()))
        dispatch = broker.scripts["dispatch"]
        pipe = broker.client.pipeline(transaction=False)
        for _, message, encoded in ready:  # RedisBroker._dispatch's arguments for "enqueue"
            pipe.evalsha(dispatch.sha, 1, broker.namespace, "enqueue", current_millis(), message.queue_name,
                         broker.broker_id, broker.heartbeat_timeout, broker.dead_message_ttl,
                         broker._should_do_maintenance("enqueue"), broker._max_unpack_size(),
                         message.options["redis_message_id"], encoded)
        try:
            results = pipe.execute(raise_on_error=False)
        except Exception as error:  # the connection failed: none is known to be sent
            return failed + [(command, error) for command, _, _ in ready]
        for (command, message, encoded), result in zip(ready, results, strict=True):
            try:
                if isinstance(result, redis.exceptions.NoScriptError):  # Redis restarted: this loads the script
                    broker.do_enqueue(message.queue_name, message.options["redis_message_id"], encoded)
                elif isinstance(result, Exception):
                    raise result
                broker.emit_after("enqueue", message, None)
            except Exception as error:
                failed.append((command, error))
        return failed

    @staticmethod
    def _message(command: StageCommand) -> dramatiq.Message:
        return dramatiq.Message(queue_name=command.QUEUE, actor_name=actor_name(type(command)), args=(),
                                kwargs=command.kwargs(), options={})


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueStats:
    queue: str
    depth: int
    in_flight: int
    delayed: int
    dead: int
    oldest_age_s: float | None


def queue_stats(client: redis.Redis, queues: tuple[str, ...] = QUEUES) -> list[QueueStats]:
    """Depth, in-flight, delayed and dead-letter counts, and the age of the oldest waiting message."""
    stats = []
    now_ms = time.time() * 1000
    for queue in queues:
        name = f"{NAMESPACE}:{queue}"
        pipe = client.pipeline()
        pipe.llen(name).hlen(f"{name}.msgs").llen(f"{NAMESPACE}:{queue}.DQ").zcard(f"{name}.XQ")
        pipe.lindex(name, 0)
        depth, stored, delayed, dead, head = pipe.execute()
        oldest = None
        if head is not None:
            raw = client.hget(f"{name}.msgs", head)
            if raw:
                oldest = max(0.0, (now_ms - json.loads(raw)["message_timestamp"]) / 1000)
        stats.append(QueueStats(queue=queue, depth=depth, in_flight=max(0, stored - depth), delayed=delayed,
                                dead=dead, oldest_age_s=oldest))
    return stats


def heartbeats(client: redis.Redis) -> dict[str, float]:
    """Each broker's (worker process's) last command to Redis, in ms since the epoch: Dramatiq's heartbeat; a
    worker whose heartbeat is older than the timeout is dead to the broker's maintenance."""
    return {(w.decode() if isinstance(w, bytes) else w): score
            for w, score in client.zrange(f"{NAMESPACE}:__heartbeats__", 0, -1, withscores=True)}


def acks_key(worker: str, queue: str) -> str:
    """The set of `queue`'s messages `worker` has fetched and not yet acknowledged."""
    return f"{NAMESPACE}:__acks__.{worker}.{queue}"


def oldest_message_at(client: redis.Redis, queue: str) -> datetime | None:
    """When the oldest message still on `queue` was sent: the head of its waiting list (first in, first out)
    or one a live worker has taken and not yet acknowledged; None when the queue holds none. Retries waiting
    out their backoff (the `.DQ` queue) are not counted."""
    name = f"{NAMESPACE}:{queue}"
    pipe = client.pipeline(transaction=False)
    pipe.lindex(name, 0)
    for worker in heartbeats(client):
        pipe.smembers(acks_key(worker, queue))
    head, *taken = pipe.execute()
    ids = {head} if head is not None else set()
    for members in taken:
        ids |= members
    if not ids:
        return None
    stamps = [json.loads(raw)["message_timestamp"] for raw in client.hmget(f"{name}.msgs", list(ids)) if raw]
    return datetime.fromtimestamp(min(stamps) / 1000, UTC) if stamps else None


def dead_lettered_since(client: redis.Redis, since_ms: float, queues: tuple[str, ...] = QUEUES) -> dict[str, int]:
    """Per queue, how many messages were dead-lettered at or after `since_ms` (the XQ set is scored by when)."""
    pipe = client.pipeline()
    for queue in queues:
        pipe.zcount(f"{NAMESPACE}:{queue}.XQ", since_ms, "+inf")
    return dict(zip(queues, pipe.execute(), strict=True))
