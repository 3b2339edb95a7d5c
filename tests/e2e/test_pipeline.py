"""End to end: storefront sim → API → render worker, as separate processes over real HTTP, PG and Redis."""

from __future__ import annotations

import io
import subprocess
import sys
import time

import httpx
import psutil
import pytest
from PIL import Image
from sqlalchemy import create_engine, func, select

import db
from adapters.objectstore import make_object_store
from core.states import JobStatus, OrderStatus
from db import tables as t
from tests.conftest import settings_for

pytestmark = pytest.mark.e2e
RENDERED = {OrderStatus.READY_FOR_PRODUCTION, OrderStatus.IN_PRODUCTION, OrderStatus.QA}
SETTLED = RENDERED | {OrderStatus.ON_HOLD, OrderStatus.FAILED}


def wait_until_settled(engine, system, expected: int, timeout: float = 300) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            counts = {str(s): n for s, n in conn.execute(select(t.orders.c.status, func.count())
                                                         .group_by(t.orders.c.status))}
        if sum(counts.get(s, 0) for s in SETTLED) >= expected:
            return counts
        system.assert_alive()
        time.sleep(1)
    raise AssertionError(f"orders did not settle in {timeout}s: {counts}; logs in {system.logs}")


def test_storefront_orders_flow_to_ready_for_production_with_print_files_matching_their_templates(system, pg_url):
    # given the API, the workers and the scheduler running as processes
    # when the storefront sim sends 24 orders over HTTP (3 % invalid ones among them, checked by --strict)
    sim = subprocess.run([sys.executable, "-m", "sims.storefront", "--url", system.api_url, "--count", "24",
                          "--seed", "11", "--strict", "--no-progress", "--concurrency", "4"],
                         env=system.env, capture_output=True, text=True, timeout=300)
    assert sim.returncode == 0, sim.stdout[-3000:] + sim.stderr[-3000:]
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        accepted = conn.scalar(select(func.count()).select_from(t.orders))
    assert accepted >= 20
    # then every accepted order is rendered (and moves on towards production), none held
    counts = wait_until_settled(engine, system, accepted)
    assert sum(counts.get(s, 0) for s in RENDERED) == accepted, counts
    # and each stored print file has its template's pixel size, DPI and sRGB profile
    settings = settings_for(pg_url, object_store_dir=system.env["OBJECT_STORE_DIR"])
    db.configure(settings)
    store = make_object_store(settings)
    with engine.connect() as conn:
        rows = conn.execute(select(t.assets.c.print_file_key, t.assets.c.width, t.assets.c.height,
                                   t.template_versions.c.spec)
                            .join(t.template_versions, (t.template_versions.c.template_key == t.assets.c.template_key)
                                  & (t.template_versions.c.version == t.assets.c.template_version))).all()
        timeline = list(conn.scalars(select(t.order_events.c.type).where(
            t.order_events.c.order_id == conn.scalar(select(t.orders.c.id).limit(1))).order_by(t.order_events.c.id)))
    assert rows
    for key, width, height, spec in rows[:3]:
        image = Image.open(io.BytesIO(store.get(key)))
        expected = (round(spec["print_area_in"][0] * spec["dpi"]), round(spec["print_area_in"][1] * spec["dpi"]))
        assert image.size == (width, height) == expected
        assert tuple(round(v) for v in image.info["dpi"]) == (spec["dpi"], spec["dpi"])
        assert image.info.get("icc_profile")
    lifecycle = [kind for kind in timeline if kind.startswith("order.")]  # notifications interleave
    assert lifecycle[:2] == ["order.received", "order.rendering"] and "order.ready_for_production" in lifecycle
    engine.dispose()


def test_worker_metrics_listen_on_loopback_only(system):
    # given a worker started the way the Procfile starts it (python -m workers …)
    deadline = time.monotonic() + 30
    listening = []
    while time.monotonic() < deadline and not listening:
        listening = [c.laddr for c in psutil.net_connections(kind="tcp")
                     if c.status == psutil.CONN_LISTEN and c.laddr.port == system.metrics_port]
        time.sleep(0.5)
    # then its Prometheus exporter is bound to 127.0.0.1 only, and serves Dramatiq's metrics there
    assert [addr.ip for addr in listening] == ["127.0.0.1"]
    metrics = httpx.get(f"http://127.0.0.1:{system.metrics_port}/metrics", timeout=5).text
    assert "dramatiq_" in metrics


def test_orders_are_routed_batched_submitted_and_followed_to_printed_at_the_partner_sim(system, pg_url):
    # given the system and the partner sim (which also sends duplicate and out-of-order webhooks)
    sim = subprocess.run([sys.executable, "-m", "sims.storefront", "--url", system.api_url, "--count", "12",
                          "--seed", "21", "--invalid-rate", "0", "--no-hostile", "--no-progress"],
                         env=system.env, capture_output=True, text=True, timeout=300)
    assert sim.returncode == 0, sim.stdout[-3000:]
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        accepted = conn.scalar(select(func.count()).select_from(t.orders))
    # then every order passes the production gate and every job comes back printed, with a photo link, and
    # goes on to QA (which may pass it, fail it into a reprint, or hold it for an inspector)
    before_print = {JobStatus.PENDING, JobStatus.BATCHED, JobStatus.SUBMITTED, JobStatus.QUEUED, JobStatus.PRINTING}
    past_production = {OrderStatus.QA, OrderStatus.READY_TO_SHIP, OrderStatus.LABEL_CREATED, OrderStatus.SHIPPED,
                       OrderStatus.DELIVERED, OrderStatus.ON_HOLD}
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            jobs = dict(conn.execute(select(t.print_jobs.c.status, func.count())
                                     .group_by(t.print_jobs.c.status)).all())
            orders = dict(conn.execute(select(t.orders.c.status, func.count()).group_by(t.orders.c.status)).all())
        if not set(jobs) & before_print and sum(orders.get(s, 0) for s in past_production) == accepted:
            break
        system.assert_alive()
        time.sleep(1)
    assert not set(jobs) & before_print, (jobs, orders, system.logs)
    assert sum(orders.get(s, 0) for s in past_production) == accepted, (jobs, orders, system.logs)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).where(t.print_jobs.c.photo_url.is_(None))) == 0
        batches = dict(conn.execute(select(t.batches.c.status, func.count()).group_by(t.batches.c.status)).all())
        types = set(conn.scalars(select(t.order_events.c.type)))
        applied = conn.scalar(select(func.count()).where(t.order_events.c.type == "job.printed"))
    assert set(batches) == {"submitted"}
    expected = {"job.routed", "job.batched", "job.submitted", "order.in_production", "order.qa",
                "inspection.passed" if "inspection.passed" in types else "inspection.needs_review"}
    assert expected <= types, " ".join(sorted(types))
    # and duplicates never moved a job twice: exactly one "printed" per job (every job was printed)
    assert applied == sum(jobs.values())
    partner_ledger = httpx.get(f"{system.partner_url}/sim/ledger", timeout=5).json()
    assert partner_ledger["duplicate_creates"] == 0
    engine.dispose()
