"""Route actors run the batcher on every worker thread: on PostgreSQL they take turns and never collide."""

from __future__ import annotations

import threading
import time

from sqlalchemy import func, select

from core.services.production import ProductionRules, batch_ready_jobs, route_order
from core.services.render import render_order
from db import tables as t
from tests.conftest import ApiHarness
from tests.integration.production_helpers import place_orders


def test_four_batchers_at_the_same_moment_batch_every_routed_job_once_without_a_conflict(pg_url, tmp_path):
    # given twelve orders rendered and routed, none batched yet
    harness = ApiHarness(pg_url, tmp_path)
    svc, rules = harness.services, ProductionRules()
    for order_id in place_orders(harness, orders=12, units=1):
        render_order(order_id, uow=svc.uow(), store=svc.store, now=svc.now, clock=time.perf_counter)
        assert route_order(order_id, uow=svc.uow(), now=svc.now(), rules=rules) == "routed"
    errors: list[Exception] = []
    start = threading.Barrier(4)

    def batcher() -> None:
        start.wait()
        try:
            batch_ready_jobs(svc.uow(), now=svc.now(), rules=rules, new_id=svc.ids.new)
        except Exception as error:  # noqa: BLE001 - the assertion below reports it
            errors.append(error)

    # when four route actors run the batcher at once
    threads = [threading.Thread(target=batcher) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # then none failed, and every job is batched, each in exactly one batch
    assert errors == []
    with svc.engine.connect() as conn:
        j = t.print_jobs
        assert conn.execute(select(j.c.status, func.count()).group_by(j.c.status)).all() == [("batched", 12)]
        assert conn.scalar(select(func.count()).where(j.c.batch_id.is_(None))) == 0
    svc.engine.dispose()
