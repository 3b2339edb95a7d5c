"""Stage CPU: how much CPU each actor (and each scheduler job) uses, for the pipeline benchmark.

Opt-in (`PRESSROOM_STAGE_CPU=1`): the thread's own CPU time (`time.thread_time`, C code that releases the GIL
included) from a message's start to its end, and the database transactions it committed or rolled back,
added up per actor in Redis, where `python -m bench.pipeline` reads them. Process CPU minus these sums is the
machinery around the actors (fetching, acks, heartbeats).

Each process adds its runs up in memory and a background thread writes them to Redis once a second
(`FLUSH_EVERY_S`): a round trip per message cost ≈ 0.4 ms of CPU, which the figures counted as machinery.
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
COMMITS_KEY = "pressroom:cpu:commits"
ROLLBACKS_KEY = "pressroom:cpu:rollbacks"
FLUSH_EVERY_S = 1.0
"""How often a process writes its totals; a reader waits a little longer than this for the last runs."""

_current = threading.local()  # the transactions of the run this thread is in (None: not measuring)


def _count(kind: int) -> None:
    counts = getattr(_current, "counts", None)
    if counts is not None:
        counts[kind] += 1


def _watch_transactions() -> None:
    """Count every engine's commits and rollbacks against the run of the thread that made them (once)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if not event.contains(Engine, "commit", _on_commit):
        event.listen(Engine, "commit", _on_commit)
        event.listen(Engine, "rollback", _on_rollback)


def _on_commit(_connection) -> None:
    _count(0)


def _on_rollback(_connection) -> None:
    _count(1)


class _Totals:
    """One process's runs per name, written to Redis by a daemon thread (started on first use, so a forking
    parent has none)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: dict[tuple[int, str], list[float]] = {}
        self.clients: dict[int, redis.Redis] = {}
        self.flusher: threading.Thread | None = None

    def add(self, client: redis.Redis, name: str, cpu_s: float, commits: int, rollbacks: int) -> None:
        with self.lock:
            entry = self.pending.setdefault((id(client), name), [0.0, 0, 0, 0])
            entry[0] += cpu_s * 1000
            entry[1] += 1
            entry[2] += commits
            entry[3] += rollbacks
            self.clients[id(client)] = client
            if self.flusher is None:
                self.flusher = threading.Thread(target=self._flush_forever, name="stage-cpu", daemon=True)
                self.flusher.start()

    def flush(self) -> None:
        with self.lock:
            pending, self.pending = self.pending, {}
        pipes: dict[int, redis.client.Pipeline] = {}
        for (client_id, name), (ms, runs, commits, rollbacks) in pending.items():
            pipe = pipes.get(client_id)
            if pipe is None:
                pipe = pipes[client_id] = self.clients[client_id].pipeline(transaction=False)
            pipe.hincrbyfloat(MS_KEY, name, ms).hincrby(COUNT_KEY, name, runs)
            pipe.hincrby(COMMITS_KEY, name, commits).hincrby(ROLLBACKS_KEY, name, rollbacks)
        for pipe in pipes.values():
            try:
                pipe.execute()
            except redis.RedisError as error:  # a measurement never fails the work
                log.warning("stage CPU not recorded: %s", error)

    def _flush_forever(self) -> None:
        while True:
            time.sleep(FLUSH_EVERY_S)
            self.flush()


_totals = _Totals()


def record(client: redis.Redis, name: str, cpu_s: float, commits: int = 0, rollbacks: int = 0) -> None:
    """Add one run of `name` (written to Redis within `FLUSH_EVERY_S`)."""
    _totals.add(client, name, cpu_s, commits, rollbacks)


@contextmanager
def measured(client: redis.Redis | None, name: str) -> Iterator[None]:
    """Add the body's thread CPU time and transactions to `name` (nothing when `client` is None)."""
    if client is None:
        yield
        return
    _watch_transactions()
    _current.counts = counts = [0, 0]
    started = time.thread_time()
    try:
        yield
    finally:
        _current.counts = None
        record(client, name, time.thread_time() - started, *counts)


class StageCpu(Middleware):
    """Adds each message's thread CPU time and transactions to its actor's totals."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.local = threading.local()
        _watch_transactions()

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message) -> None:
        _current.counts = [0, 0]
        self.local.started = time.thread_time()

    def after_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message, *, result=None,
                              exception=None) -> None:
        started = getattr(self.local, "started", None)
        counts = getattr(_current, "counts", None) or [0, 0]
        _current.counts = None
        if started is not None:
            self.local.started = None
            record(self.client, message.actor_name, time.thread_time() - started, *counts)

    after_skip_message = after_process_message


def stage_cpu(client: redis.Redis) -> dict[str, tuple[int, float]]:
    """Per actor or job: (count, CPU seconds) recorded so far."""
    ms, counts = client.hgetall(MS_KEY), client.hgetall(COUNT_KEY)
    return {name.decode(): (int(counts.get(name, 0)), float(value) / 1000) for name, value in ms.items()}


def stage_transactions(client: redis.Redis) -> dict[str, tuple[int, int]]:
    """Per actor or job: (commits, rollbacks) recorded so far."""
    commits, rollbacks = client.hgetall(COMMITS_KEY), client.hgetall(ROLLBACKS_KEY)
    return {name.decode(): (int(value), int(rollbacks.get(name, 0))) for name, value in commits.items()}
