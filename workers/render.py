"""Actors on the `render` queue."""

from __future__ import annotations

import time

import dramatiq
import redis.lock

from core.commands import RenderAsset, actor_name
from core.services.render import render_order
from workers.bootstrap import Container, container

RENDER_LIMIT_S = 10 * 60


@dramatiq.actor(actor_name=actor_name(RenderAsset), queue_name=RenderAsset.QUEUE, max_retries=8,
                min_backoff=1_000, max_backoff=120_000, time_limit=RENDER_LIMIT_S * 1000)
def render_asset(order_id: str) -> None:
    c = container()
    render_order(order_id, uow=c.uow(), store=c.store, now=c.now, clock=time.perf_counter,
                 one_at_a_time=lambda key: one_render_per_design(c, key))


def one_render_per_design(c: Container, asset_key: str) -> redis.lock.Lock:
    """A lock on one design's asset key, shared by every worker process through Redis: its holder renders,
    the others wait and then find it in the cache. It expires after the actor's time limit (a crashed holder
    does not block the design), and a waiter gives up then (the message is retried)."""
    return c.redis.lock(f"pressroom:render-lock:{asset_key}", timeout=RENDER_LIMIT_S, blocking_timeout=RENDER_LIMIT_S)
