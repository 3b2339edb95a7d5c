"""A popular design's first orders, rendered at the same moment by several workers, render it once."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from contextlib import contextmanager

from sqlalchemy import select

from core.services.render import render_order
from db import tables as t
from tests.unit.test_render_stage import place


class CountingStore:
    """The test's object store, counting the print files written."""

    def __init__(self, store) -> None:
        self.store, self.print_files = store, 0

    def put(self, key: str, data: bytes, **kwargs) -> str:
        if key.endswith("/print.png"):
            self.print_files += 1
        return self.store.put(key, data, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.store, name)


def test_orders_of_one_design_rendered_together_render_it_once_and_the_others_hit_the_cache(api):
    svc = api.services
    # given three orders of the same design, and a lock per design shared by the "workers"
    art = api.upload()["id"]
    orders = [place(api, artwork_id=art) for _ in range(3)]
    locks: dict[str, threading.Lock] = defaultdict(threading.Lock)

    @contextmanager
    def one_at_a_time(key: str):
        with locks[key]:
            yield

    store = CountingStore(svc.store)
    outcomes: list[str] = []
    start = threading.Barrier(len(orders))

    def work(order_id: str) -> None:
        start.wait()
        outcomes.append(render_order(order_id, uow=svc.uow(), store=store, now=svc.now, clock=time.perf_counter,
                                     one_at_a_time=one_at_a_time))

    # when three workers render them at the same moment
    threads = [threading.Thread(target=work, args=(order_id,)) for order_id in orders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # then every order is rendered, the print file was written once, and two orders were cache hits
    assert outcomes == ["rendered"] * 3
    assert store.print_files == 1
    with svc.engine.connect() as conn:
        assert conn.scalar(select(t.assets.c.hits)) == 2
