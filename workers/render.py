"""Actors on the `render` queue."""

from __future__ import annotations

import time

import dramatiq

from core.commands import RenderAsset, actor_name
from core.services.render import render_order
from workers.bootstrap import container


@dramatiq.actor(actor_name=actor_name(RenderAsset), queue_name=RenderAsset.QUEUE, max_retries=8,
                min_backoff=1_000, max_backoff=120_000, time_limit=10 * 60_000)
def render_asset(order_id: str) -> None:
    c = container()
    render_order(order_id, uow=c.uow(), store=c.store, now=c.now, clock=time.perf_counter)
