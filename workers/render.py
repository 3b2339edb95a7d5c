"""Actors on the `render` queue."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import dramatiq
import redis

from core.commands import RenderAsset, actor_name
from workers.bootstrap import Container, container

log = logging.getLogger(__name__)
RENDER_LIMIT_S = 10 * 60
LOCK_LEASE_S = 30.0  # a render takes seconds; a dead holder's lock frees this long after it stopped renewing


@dramatiq.actor(actor_name=actor_name(RenderAsset), queue_name=RenderAsset.QUEUE, max_retries=8,
                min_backoff=1_000, max_backoff=120_000, time_limit=RENDER_LIMIT_S * 1000)
def render_asset(order_id: str) -> None:
    # PIL and the renderer load with the first render, not at a worker's boot
    from core.services.render import render_order
    from workers.qa import shared_references

    c = container()
    render_order(order_id, uow=c.uow(), store=c.store, now=c.now, clock=time.perf_counter,
                 one_at_a_time=lambda key: one_render_per_design(c, key), references=shared_references(c.store))


def one_render_per_design(c: Container, asset_key: str) -> AbstractContextManager[None]:
    """A lock on one design's asset key, shared by every worker process through Redis: its holder renders,
    the others wait and then find it in the cache; a waiter gives up after the actor's time limit (the message
    is retried)."""
    return leased_lock(c.redis, f"pressroom:render-lock:{asset_key}", wait_s=RENDER_LIMIT_S)


@contextmanager
def leased_lock(client: redis.Redis, name: str, *, wait_s: float, lease_s: float = LOCK_LEASE_S) -> Iterator[None]:
    """Hold a Redis lock on a short lease that a thread renews while the body runs.

    A holder that dies (SIGKILL, OOM) stops renewing, so the lock is free `lease_s` later instead of after the
    whole time limit: the soak saw every order of a design wait 10 minutes behind a killed worker's lock.

    Raises:
        redis.exceptions.LockError: not acquired within `wait_s`.
    """
    # thread_local=False: the renewing thread must see the token the acquiring thread got
    lock = client.lock(name, timeout=lease_s, blocking_timeout=wait_s, thread_local=False)
    with lock:
        done = threading.Event()

        def renew() -> None:
            while not done.wait(lease_s / 3):
                try:
                    lock.reacquire()
                except redis.exceptions.RedisError:  # lost it, or Redis is gone: the body finishes regardless
                    log.warning("render lock %s could not be renewed", name)
                    return

        renewer = threading.Thread(target=renew, name=f"lease:{name[-12:]}", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            done.set()
            renewer.join()
